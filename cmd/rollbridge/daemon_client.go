package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// configEnv names the config file when -c is not given; socketEnv names
// the control socket for the commands that can reach a daemon without
// loading the config (docs/cli.md#conventions-shared-by-every-command).
const (
	configEnv = "ROLLBRIDGE_CONFIG"
	socketEnv = "ROLLBRIDGE_SOCKET"
)

// configAnnotation records on the command the config it loaded (as
// displayed), for the hints of a failed connection.
const configAnnotation = "rollbridge-config"

// configChoice is how a command's config file was named: by -c, by
// ROLLBRIDGE_CONFIG, or not at all (the lookup of ./rollbridge.js).
type configChoice struct {
	path   string
	given  bool
	source string // "-c", configEnv or ""
}

// chooseConfig applies the lookup order: -c, then ROLLBRIDGE_CONFIG, then
// the default file.
func chooseConfig(cmd *cobra.Command, flag string) configChoice {
	if cmd.Flags().Changed("config") {
		return configChoice{path: flag, given: true, source: "-c"}
	}
	if v := os.Getenv(configEnv); v != "" {
		return configChoice{path: v, given: true, source: configEnv}
	}
	return configChoice{}
}

// locateConfig resolves the config file of cmd.
func locateConfig(cmd *cobra.Command, flag, cwd string) (jsconfig.Location, configChoice, error) {
	c := chooseConfig(cmd, flag)
	loc, err := jsconfig.Locate(c.path, c.given, cwd)
	return loc, c, err
}

// loadPlan resolves and loads the config strictly
// (docs/cli.md#conventions-shared-by-every-command): any problem is a fatal
// error carrying the loader's message, and a missing file says how it
// was looked up.
func loadPlan(cmd *cobra.Command, configPath string) (*jsconfig.Plan, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	loc, choice, err := locateConfig(cmd, configPath, cwd)
	if err != nil {
		return nil, withHint(err, "rollbridge reads the config named by -c <path>, else by $"+configEnv+", else ./rollbridge.js in the current directory.")
	}
	plan, err := jsconfig.Load(loc.Abs, jsconfig.Options{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()})
	if err != nil {
		if _, statErr := os.Stat(loc.Abs); errors.Is(statErr, fs.ErrNotExist) {
			return nil, withHint(err, missingConfigHint(choice, loc.Abs))
		}
		return nil, err
	}
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[configAnnotation] = loc.Display
	return plan, nil
}

// missingConfigHint says that the config file itself is missing and who
// named it.
func missingConfigHint(c configChoice, abs string) string {
	switch c.source {
	case "-c":
		return "The config file " + abs + " does not exist (named by -c). Pass the path of the application's rollbridge.js."
	case configEnv:
		return "The config file " + abs + " does not exist (named by $" + configEnv + "; -c overrides it). Fix the variable or pass -c <path>."
	}
	return "The config file " + abs + " does not exist."
}

// addSocketFlag adds --socket to a command that can reach a daemon
// without its config (status, logs, events, stop, shutdown).
func addSocketFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVar(dst, "socket", "", "Talk to the daemon on this control socket without loading the config (also $"+socketEnv+")")
	setPlaceholder(cmd, "socket", "<path>")
}

// daemonTarget is how a command with --socket reaches the daemon: the
// socket named by --socket, -c, $ROLLBRIDGE_SOCKET or the config, in
// that order. plan is nil when no config was loaded. Without a config
// there is no control.owner: the endpoint trusts root and the caller
// only.
func daemonTarget(cmd *cobra.Command, configPath, socket string) (control.Endpoint, *jsconfig.Plan, error) {
	flags := cmd.Flags()
	if flags.Changed("socket") && flags.Changed("config") {
		return control.Endpoint{}, nil, &usageError{cmd: cmd, text: "option '--socket <path>' cannot be used with option '-c, --config <path>'"}
	}
	given := flags.Changed("socket")
	if !given && !flags.Changed("config") {
		socket, given = os.LookupEnv(socketEnv)
		given = given && socket != ""
	}
	if given {
		if socket == "" {
			return control.Endpoint{}, nil, errors.New("--socket needs the path of the daemon's control socket (control.path in its config).")
		}
		return control.Endpoint{Path: socket}, nil, nil
	}
	plan, err := loadPlan(cmd, configPath)
	if err != nil {
		return control.Endpoint{}, nil, withHint(err, "To reach the running daemon without loading this config, pass --socket <control.path> (default /tmp/rollbridge-<application>.sock) or set "+socketEnv+".")
	}
	return engine.ControlEndpoint(plan.Control), plan, nil
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
