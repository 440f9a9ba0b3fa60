package jsconfig

import (
	"math"
	"strconv"
	"strings"
)

// FormatNumber formats f the way JavaScript's String(number) does: integers
// without a decimal point, fractions in shortest round-trip form, and
// exponent notation only outside 1e-7 <= |f| < 1e21. Messages and JSON
// output use it so numbers read exactly as the Node.js rollbridge prints them.
func FormatNumber(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0" // also for -0, as JavaScript prints it
	}
	sign := ""
	if f < 0 {
		sign = "-"
		f = -f
	}
	// Shortest digits and decimal exponent: d.ddddde±x.
	s := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expPart, _ := strings.Cut(s, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expPart)
	k := len(digits)
	n := exp + 1 // position of the decimal point relative to the digits
	var out string
	switch {
	case k <= n && n <= 21:
		out = digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		out = digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		out = "0." + strings.Repeat("0", -n) + digits
	default:
		e := n - 1
		es := strconv.Itoa(e)
		if e >= 0 {
			es = "+" + es
		}
		if k == 1 {
			out = digits + "e" + es
		} else {
			out = digits[:1] + "." + digits[1:] + "e" + es
		}
	}
	return sign + out
}

// Number is a float64 that encodes to JSON the way JSON.stringify does.
type Number float64

// MarshalJSON prints the number in JavaScript form (8182, 1.5, 1e+21).
func (n Number) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return []byte(FormatNumber(f)), nil
}
