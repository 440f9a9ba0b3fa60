package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// holdFlags are deploy's --hold-traffic, --before-switch and --max-pause
// (docs/cli.md#deploy---hold-traffic).
type holdFlags struct {
	on           bool
	beforeSwitch string
	maxPause     string
}

func (h *holdFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&h.on, "hold-traffic", false, "Hold new requests from the health check to the switch, while requests in flight finish (and --before-switch runs)")
	cmd.Flags().StringVar(&h.beforeSwitch, "before-switch", "", "Shell command to run in the release directory while traffic is held, before the switch (needs --hold-traffic)")
	cmd.Flags().StringVar(&h.maxPause, "max-pause", "30s", "Longest traffic may be held: a duration (2m, 1500ms) or seconds (needs --hold-traffic; default 30s, at most 1h)")
	setPlaceholder(cmd, "before-switch", "<command>")
	setPlaceholder(cmd, "max-pause", "<duration>")
}

// fields checks the options and returns the deploy request's fields for
// them; nothing is sent when they are wrong.
func (h *holdFlags) fields(cmd *cobra.Command) ([]jsconfig.Field, error) {
	for _, name := range []string{"before-switch", "max-pause"} {
		if cmd.Flags().Changed(name) && !h.on {
			return nil, &usageError{cmd: cmd, text: fmt.Sprintf("option '--%s' requires --hold-traffic", name)}
		}
	}
	if !h.on {
		return []jsconfig.Field{}, nil
	}
	fields := []jsconfig.Field{{Key: "holdTraffic", Value: true}}
	if cmd.Flags().Changed("before-switch") {
		if err := engine.CheckBeforeSwitch(h.beforeSwitch); err != nil {
			return nil, &usageError{cmd: cmd, text: "option '--before-switch <command>': " + strings.Replace(err.Error(), "beforeSwitch ", "the command ", 1)}
		}
		fields = append(fields, jsconfig.Field{Key: "beforeSwitch", Value: h.beforeSwitch})
	}
	if cmd.Flags().Changed("max-pause") {
		d, err := maxPauseFlag(cmd, h.maxPause)
		if err != nil {
			return nil, err
		}
		fields = append(fields, jsconfig.Field{Key: "maxPauseMs", Value: d.Milliseconds()})
	}
	return fields, nil
}

// probeTraffic makes sure the daemon knows traffic holds before a deploy
// that needs one is sent: a daemon without them (the Node.js rollbridge,
// an older Go build) would deploy without holding anything. A daemon
// that does not answer is left to the deploy request to report.
func probeTraffic(plan *jsconfig.Plan) error {
	_, err := control.Call(engine.ControlEndpoint(plan.Control), control.SortedRequest("traffic"), control.ReadTimeout)
	switch {
	case daemonLacks(err, "traffic"):
		return errors.New("The running daemon does not support --hold-traffic (it is the Node.js rollbridge or an older rollbridge); nothing was deployed. Replace it with this version to use it: rollbridge daemon --takeover-owner … (docs/cli.md#takeover-replacing-the-running-daemon).")
	case errors.As(err, new(*control.DaemonError)):
		return err
	}
	return nil
}
