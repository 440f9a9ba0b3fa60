package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// loadPlan resolves and loads the config strictly
// (docs/cli.md#conventions-shared-by-every-command): any problem is a fatal
// error carrying the loader's message.
func loadPlan(cmd *cobra.Command, configPath string) (*jsconfig.Plan, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	loc, err := jsconfig.Locate(configPath, cmd.Flags().Changed("config"), cwd)
	if err != nil {
		return nil, err
	}
	return jsconfig.Load(loc.Abs, jsconfig.Options{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()})
}

// printPretty prints a daemon response re-indented like
// JSON.stringify(value, null, 2), keeping the daemon's key order.
func printPretty(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

var jsDecimal = regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$`)

// jsNumber converts a string the way JavaScript's Number() does: decimal
// with fraction and exponent, 0x/0o/0b integers, Infinity, surrounding
// whitespace ignored, "" is 0. ok is false for NaN.
func jsNumber(s string) (f float64, ok bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, true
	}
	if len(s) > 2 && s[0] == '0' {
		base := map[byte]int{'x': 16, 'X': 16, 'o': 8, 'O': 8, 'b': 2, 'B': 2}[s[1]]
		if base != 0 {
			n, err := strconv.ParseUint(s[2:], base, 64)
			return float64(n), err == nil
		}
	}
	switch s {
	case "Infinity", "+Infinity":
		return math.Inf(1), true
	case "-Infinity":
		return math.Inf(-1), true
	}
	if !jsDecimal.MatchString(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !strings.Contains(err.Error(), "range") {
		return 0, false
	}
	return f, true
}
