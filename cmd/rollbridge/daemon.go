package main

import (
	"os"
	"runtime"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// tuneDaemonProcess sizes the daemon's scheduler: the proxy shares the
// machine with the app it fronts, and on a small machine one OS thread
// running Go code proxies more requests per second, with less CPU per
// request, than two competing with the app for the same cores (measured:
// 2 cores, 6300 vs 5000 requests/s). GOMAXPROCS in the environment wins.
func tuneDaemonProcess() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(1, runtime.NumCPU()/2))
	}
}

func newDaemonCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "",
		RunE: func(cmd *cobra.Command, args []string) error {
			tuneDaemonProcess()
			cwd, err := os.Getwd()
			if err != nil {
				return err
			}
			loc, err := jsconfig.Locate(configPath, cmd.Flags().Changed("config"), cwd)
			if err != nil {
				return err
			}
			load := func() (*jsconfig.Plan, error) { return engine.LoadConfigIsolated(loc.Abs, cmd.ErrOrStderr()) }
			plan, err := load()
			if err != nil {
				return err
			}
			identity, err := engine.ExecutableIdentity(version)
			if err != nil {
				return err
			}
			d := engine.New(engine.Options{
				ConfigPath: plan.Path, Plan: plan, Identity: identity, LoadConfig: load,
				Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
			})
			if err := d.Start(); err != nil {
				return err
			}
			return d.Run()
		},
	}
	addConfigFlag(cmd, &configPath)
	return cmd
}

// newLoadConfigCommand is the hidden helper the daemon runs to load its
// config out of process (engine.LoadConfigIsolated).
func newLoadConfigCommand() *cobra.Command {
	return &cobra.Command{
		Use:    engine.LoadConfigCommand + " <config>",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return engine.ServeConfigLoad(args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}
