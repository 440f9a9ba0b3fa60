package jsconfig

import (
	"math"

	"github.com/dop251/goja"
)

// kind classifies a JavaScript value the way the config rules need it.
type kind int

const (
	kindMissing  kind = iota // absent key or undefined
	kindNull                 // null (usually also "missing", see docs/config.md#3-how-javascript-values-are-read)
	kindBool                 //
	kindNumber               //
	kindString               //
	kindArray                // Array.isArray
	kindObject               // any other object that is not a function
	kindFunction             //
	kindOther                // symbol, bigint
)

// value is a JavaScript value read through normal property access, so
// getters run and inherited properties are visible, as in the reference.
// It is only used on the goroutine that owns the runtime.
type value struct {
	rt *jsRuntime
	v  goja.Value
}

func (v value) kind() kind {
	switch {
	case v.v == nil || goja.IsUndefined(v.v):
		return kindMissing
	case goja.IsNull(v.v):
		return kindNull
	case goja.IsNumber(v.v):
		return kindNumber
	case goja.IsString(v.v):
		return kindString
	}
	switch x := v.v.(type) {
	case *goja.Object:
		if _, ok := goja.AssertFunction(x); ok {
			return kindFunction
		}
		if v.rt.isArray(x) {
			return kindArray
		}
		return kindObject
	}
	if _, ok := v.v.Export().(bool); ok {
		return kindBool
	}
	return kindOther // symbol, bigint
}

// missing reports whether the value is absent, undefined or null.
func (v value) missing() bool {
	k := v.kind()
	return k == kindMissing || k == kindNull
}

func (v value) isMapping() bool { return v.kind() == kindObject }

func (v value) get(key string) value {
	o, ok := v.v.(*goja.Object)
	if !ok {
		return value{rt: v.rt}
	}
	return value{rt: v.rt, v: o.Get(key)}
}

// finite returns the number and whether the value is a finite number.
func (v value) finite() (float64, bool) {
	if v.kind() != kindNumber {
		return 0, false
	}
	f := v.v.ToFloat()
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

func (v value) str() (string, bool) {
	if v.kind() != kindString {
		return "", false
	}
	return v.v.String(), true
}

func (v value) boolean() (b, ok bool) {
	if v.kind() != kindBool {
		return false, false
	}
	return v.v.ToBoolean(), true
}

// elements returns the items of an array value.
func (v value) elements() []value {
	o := v.v.(*goja.Object)
	n := o.Get("length").ToInteger()
	out := make([]value, 0, n)
	for i := int64(0); i < n; i++ {
		out = append(out, value{rt: v.rt, v: o.Get(itoa(i))})
	}
	return out
}

// ownKeys returns the own enumerable string keys in JavaScript order
// (integer-like keys ascending, then insertion order), as Object.keys does.
func (v value) ownKeys() []string {
	return v.rt.objectKeys(v.v.(*goja.Object))
}

func itoa(i int64) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b [20]byte
	p := len(b)
	for i > 0 {
		p--
		b[p] = digits[i%10]
		i /= 10
	}
	return string(b[p:])
}
