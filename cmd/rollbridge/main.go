// Command rollbridge is the zero-downtime process supervisor and local
// traffic switcher: one binary that is both the CLI and the daemon.
package main

import (
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.2.0"

// shortLivedGCPercent is the collector's target for every command but the
// daemon. They live for milliseconds and most of that is loading
// rollbridge.js with esbuild and goja; trading a few MiB of heap for fewer
// collections took `status` from about 23 to 19 ms whole-process on a
// 2-vCPU VM. The daemon returns to Go's default (tuneDaemonProcess).
const shortLivedGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(shortLivedGCPercent)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
