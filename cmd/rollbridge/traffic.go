package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// pauseReplyMargin is how much longer than its drain timeout the pause
// command waits for the daemon's answer: the drain ends on the daemon's
// clock, and the reply still has to be written.
const pauseReplyMargin = 10 * time.Second

// trafficView is the "traffic" object of the traffic commands' replies
// and of status (docs/cli.md#control-protocol).
type trafficView struct {
	State      string `json:"state"`
	DeployHold *struct {
		ExpiresAt string `json:"expiresAt"`
		HeldAt    string `json:"heldAt"`
		ReleaseID string `json:"releaseId"`
	} `json:"deployHold"`
	Paused *struct {
		Expired   bool   `json:"expired"`
		ExpiresAt string `json:"expiresAt"`
		PausedAt  string `json:"pausedAt"`
	} `json:"paused"`
	Maintenance *struct {
		EnabledAt         string  `json:"enabledAt"`
		Message           string  `json:"message"`
		RetryAfterSeconds float64 `json:"retryAfterSeconds"`
	} `json:"maintenance"`
	HeldRequests float64 `json:"heldRequests"`
}

// trafficReply is a traffic command's reply as the CLI reads it.
type trafficReply struct {
	ActiveReleaseID *string     `json:"activeReleaseId"`
	InFlight        float64     `json:"inFlight"`
	PausedMs        float64     `json:"pausedMs"`
	Released        float64     `json:"released"`
	WasPaused       bool        `json:"wasPaused"`
	WasEnabled      bool        `json:"wasEnabled"`
	Traffic         trafficView `json:"traffic"`
}

// durationFlag reads a duration option: a Go duration ("30s", "2m",
// "1500ms") or a whole number of seconds ("30"), from lo to hi, in whole
// units of unit. Anything else is a usage error that names the option.
func durationFlag(cmd *cobra.Command, name, value string, lo, hi, unit time.Duration) (time.Duration, error) {
	bad := func(why string) error {
		example := "30s, 2m or 1500ms"
		if unit == time.Second {
			example = "90s or 2m"
		}
		return &usageError{cmd: cmd, text: fmt.Sprintf("option '--%s' %s: %q (give a duration such as %s, or whole seconds, from %s to %s)", name, why, value, example, shortDuration(lo), shortDuration(hi))}
	}
	var d time.Duration
	if n, err := strconv.ParseInt(value, 10, 64); err == nil {
		if n < 0 || n > int64(hi/time.Second) {
			return 0, bad("is out of range")
		}
		d = time.Duration(n) * time.Second
	} else {
		var err error
		if d, err = time.ParseDuration(value); err != nil {
			return 0, bad("is not a duration")
		}
	}
	if d < lo || d > hi {
		return 0, bad("is out of range")
	}
	if d%unit != 0 {
		return 0, bad("must be a whole number of " + map[time.Duration]string{time.Millisecond: "milliseconds", time.Second: "seconds"}[unit])
	}
	return d, nil
}

// maxPauseFlag reads --max-pause, which pause and deploy --hold-traffic
// bound alike: whole milliseconds from 1 ms to engine.MaxPauseLimit.
func maxPauseFlag(cmd *cobra.Command, value string) (time.Duration, error) {
	return durationFlag(cmd, "max-pause", value, time.Millisecond, engine.MaxPauseLimit, time.Millisecond)
}

// callTraffic sends a traffic command to the daemon that --config or
// --socket names and reads its reply. A daemon without the command (the
// Node.js rollbridge, an older Go build) is told apart from other errors:
// it needs replacing, not retrying.
func callTraffic(cmd *cobra.Command, configPath, socket, command string, timeout time.Duration, fields ...jsconfig.Field) ([]byte, trafficReply, error) {
	var reply trafficReply
	ep, _, err := daemonTarget(cmd, configPath, socket)
	if err != nil {
		return nil, reply, err
	}
	raw, err := control.Call(ep, control.SortedRequest(command, fields...), timeout)
	if err != nil {
		return nil, reply, unsupportedCommand(err, command)
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return nil, reply, fmt.Errorf("cannot read the daemon's reply to %s (%v); run with --json to see it as it came", command, err)
	}
	return raw, reply, nil
}

// printTraffic writes a traffic command's reply: as the daemon sent it for
// scripts and --json, text for a person.
func printTraffic(cmd *cobra.Command, asJSON bool, raw []byte, text string) error {
	if !forPerson(cmd, asJSON) {
		return printPretty(cmd.OutOrStdout(), raw)
	}
	_, err := io.WriteString(cmd.OutOrStdout(), text)
	return err
}

// daemonLacks reports the "Unknown command: <command>" reply of a
// daemon that predates command.
func daemonLacks(err error, command string) bool {
	var de *control.DaemonError
	return errors.As(err, &de) && de.Message == "Unknown command: "+command
}

// unsupportedCommand turns the reply of a daemon that predates the
// traffic commands into what to do about it.
func unsupportedCommand(err error, command string) error {
	if !daemonLacks(err, command) {
		return err
	}
	return withHint(fmt.Errorf("The running daemon does not support %s: it is the Node.js rollbridge or an older rollbridge.", command),
		"Replace it with this version, without stopping the site, by a takeover: \"rollbridge daemon --takeover-owner\" with the release that serves now (docs/cli.md#takeover-replacing-the-running-daemon). Then run this command again.")
}

func newPauseCommand(stderr io.Writer) *cobra.Command {
	var configPath, socket, maxPause, drain string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pause",
		Short: "Hold new requests at the proxy (not forwarded, not failed) until resume; requests in flight finish.",
		RunE: func(cmd *cobra.Command, args []string) error {
			max, drainTimeout := engine.DefaultMaxPause, engine.DefaultPauseDrain
			var err error
			if cmd.Flags().Changed("max-pause") {
				if max, err = maxPauseFlag(cmd, maxPause); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("drain-timeout") {
				if drainTimeout, err = durationFlag(cmd, "drain-timeout", drain, 0, engine.MaxPauseLimit, time.Millisecond); err != nil {
					return err
				}
			}
			raw, reply, err := callTraffic(cmd, configPath, socket, "pause", drainTimeout+pauseReplyMargin,
				jsconfig.Field{Key: "drainTimeoutMs", Value: jsconfig.Number(float64(drainTimeout.Milliseconds()))},
				jsconfig.Field{Key: "maxPauseMs", Value: jsconfig.Number(float64(max.Milliseconds()))})
			if err != nil {
				return err
			}
			if reply.InFlight > 0 {
				// Not a failure: the pause is on; the operator decides
				// whether to wait for those requests.
				fmt.Fprintf(stderr, "Warning: %s still in flight after the drain timeout (%s); they go on to the release that serves them. The pause stays on.\n",
					counted(int(reply.InFlight), "request was", "requests were"), drainTimeout)
			}
			return printTraffic(cmd, asJSON, raw, pauseText(reply, time.Now()))
		},
	}
	addConfigFlag(cmd, &configPath)
	addSocketFlag(cmd, &socket)
	cmd.Flags().StringVar(&maxPause, "max-pause", "", "After this long without resume the pause expires: held and new requests then get 503 until resume (default 30s, at most 1h)")
	setPlaceholder(cmd, "max-pause", "<duration>")
	cmd.Flags().StringVar(&drain, "drain-timeout", "", "Wait at most this long for the requests in flight to finish before answering (default 30s)")
	setPlaceholder(cmd, "drain-timeout", "<duration>")
	addJSONFlag(cmd, &asJSON)
	return cmd
}

// pauseText tells a person what the pause means for clients and what to
// run next.
func pauseText(r trafficReply, now time.Time) string {
	var b strings.Builder
	t := r.Traffic
	b.WriteString("Traffic paused: new requests are held (not forwarded, not refused). ")
	if r.InFlight == 0 {
		b.WriteString("No request is in flight any more.\n")
	} else {
		fmt.Fprintf(&b, "%s still in flight.\n", counted(int(r.InFlight), "request is", "requests are"))
	}
	if t.Paused != nil && t.Paused.Expired {
		// A --max-pause shorter than the drain: it ended while we waited.
		b.WriteString("The pause already reached its --max-pause: held and new requests get 503 until you run \"rollbridge resume\".\n")
	} else if t.Paused != nil {
		if at, ok := parseISO(t.Paused.ExpiresAt); ok {
			fmt.Fprintf(&b, "The pause expires at %s (in %s): then held and new requests get 503 until you run \"rollbridge resume\".\n",
				clock(at, now), ago(at.Sub(now).Round(time.Second)))
		}
	}
	if t.Maintenance != nil {
		b.WriteString("Maintenance is on and wins over the pause: clients get the maintenance response until \"rollbridge maintenance off\".\n")
	}
	b.WriteString("Resume with: rollbridge resume\n")
	return b.String()
}

func newResumeCommand() *cobra.Command {
	var configPath, socket string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "resume",
		Short: "End a pause: held requests go on, in arrival order, to the active release.",
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, reply, err := callTraffic(cmd, configPath, socket, "resume", control.ReadTimeout)
			if err != nil {
				return err
			}
			return printTraffic(cmd, asJSON, raw, resumeText(reply))
		},
	}
	addConfigFlag(cmd, &configPath)
	addSocketFlag(cmd, &socket)
	addJSONFlag(cmd, &asJSON)
	return cmd
}

// resumeText says where the held requests went.
func resumeText(r trafficReply) string {
	var b strings.Builder
	after := seconds(time.Duration(r.PausedMs) * time.Millisecond)
	to := "no release (none is active: they got 503)"
	if r.ActiveReleaseID != nil {
		to = "release " + termText(*r.ActiveReleaseID)
	}
	switch {
	case !r.WasPaused:
		b.WriteString("Traffic was not paused; nothing changed.\n")
	case r.Traffic.Maintenance != nil:
		fmt.Fprintf(&b, "Resumed after %s, but maintenance is on: clients get the maintenance response until \"rollbridge maintenance off\".\n", after)
	case r.Released == 0:
		fmt.Fprintf(&b, "Resumed after %s: no request was waiting; new requests go to %s.\n", after, to)
	default:
		fmt.Fprintf(&b, "Resumed: %s went on to %s after %s.\n", counted(int(r.Released), "held request", "held requests"), to, after)
	}
	return b.String()
}

func newMaintenanceCommand() *cobra.Command {
	var configPath, socket, message, retryAfter string
	var asJSON bool
	cmd := &cobra.Command{
		Use:       "maintenance <on|off>",
		Short:     "Answer every request with 503 and a maintenance message (on), or serve again (off).",
		ValidArgs: []string{"on", "off"},
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return &usageError{cmd: cmd, text: "missing required argument 'on' or 'off'"}
			case len(args) > 1:
				return fmt.Errorf("unexpected argument %q: %q takes one word, on or off.", args[1], cmd.CommandPath())
			case args[0] != "on" && args[0] != "off":
				return &usageError{cmd: cmd, text: fmt.Sprintf("argument %q is not on or off", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			on := args[0] == "on"
			fields := []jsconfig.Field{{Key: "enabled", Value: on}}
			if !on {
				for _, name := range []string{"message", "retry-after"} {
					if cmd.Flags().Changed(name) {
						return &usageError{cmd: cmd, text: "option '--" + name + "' goes with \"maintenance on\" only"}
					}
				}
			} else {
				if cmd.Flags().Changed("message") {
					if err := engine.CheckMaintenanceMessage(message); err != nil {
						return &usageError{cmd: cmd, text: "option '--message': " + err.Error()}
					}
					fields = append(fields, jsconfig.Field{Key: "message", Value: message})
				}
				if cmd.Flags().Changed("retry-after") {
					d, err := durationFlag(cmd, "retry-after", retryAfter, time.Second, engine.MaxRetryAfter, time.Second)
					if err != nil {
						return err
					}
					fields = append(fields, jsconfig.Field{Key: "retryAfterSeconds", Value: jsconfig.Number(d.Seconds())})
				}
			}
			raw, reply, err := callTraffic(cmd, configPath, socket, "maintenance", control.ReadTimeout, fields...)
			if err != nil {
				return err
			}
			return printTraffic(cmd, asJSON, raw, maintenanceText(on, reply))
		},
	}
	addConfigFlag(cmd, &configPath)
	addSocketFlag(cmd, &socket)
	cmd.Flags().StringVar(&message, "message", "", "With on: the text clients read (one line, at most 1000 bytes; default: a standard sentence)")
	setPlaceholder(cmd, "message", "<text>")
	cmd.Flags().StringVar(&retryAfter, "retry-after", "", "With on: the Retry-After clients get, in seconds or as a duration (default 60, at most 86400)")
	setPlaceholder(cmd, "retry-after", "<seconds>")
	addJSONFlag(cmd, &asJSON)
	return cmd
}

// maintenanceText says what clients get now and how to undo it.
func maintenanceText(on bool, r trafficReply) string {
	var b strings.Builder
	t := r.Traffic
	if on && t.Maintenance != nil {
		m := t.Maintenance
		verb := "on"
		if r.WasEnabled {
			verb = "on (updated)"
		}
		fmt.Fprintf(&b, "Maintenance is %s: every request gets 503 with Retry-After: %s and the message\n  %s\n",
			verb, strconv.FormatFloat(m.RetryAfterSeconds, 'f', -1, 64), termText(m.Message))
		b.WriteString("as an HTML page, JSON or plain text by the client's Accept header; WebSocket upgrades are refused. Requests in flight finish.\n")
		b.WriteString("Deploys still work. End it with: rollbridge maintenance off\n")
		return b.String()
	}
	if !r.WasEnabled {
		b.WriteString("Maintenance was not on; nothing changed.\n")
	} else {
		b.WriteString("Maintenance is off.\n")
	}
	switch t.State {
	case "serving":
		if r.WasEnabled {
			b.WriteString("Requests go to the active release again.\n")
		}
	case "paused":
		// "paused" also names a deploy's hold alone, which resume
		// cannot end: say which one holds the requests.
		if t.Paused != nil {
			b.WriteString("Traffic is still paused: new requests are held until \"rollbridge resume\".\n")
		}
		if h := t.DeployHold; h != nil {
			fmt.Fprintf(&b, "Traffic is held by the deploy of release %s (deploy --hold-traffic): new requests go on when that deploy switches or is called off.\n", termText(h.ReleaseID))
		}
	case "pause-expired":
		b.WriteString("A pause reached its --max-pause: requests get 503 until \"rollbridge resume\".\n")
	}
	return b.String()
}

// clock is a time of day for people, in local time, with the date when
// it is not today.
func clock(at, now time.Time) string {
	at = at.In(now.Location())
	if at.Format("2006-01-02") != now.Format("2006-01-02") {
		return at.Format("2006-01-02 15:04:05")
	}
	return at.Format("15:04:05")
}

// shortDuration is d as Go writes it, without zero units: "1h", "24h",
// "1ms", "0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
