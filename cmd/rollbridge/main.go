// Command rollbridge is the zero-downtime process supervisor and local
// traffic switcher: one binary that is both the CLI and the daemon.
package main

import "os"

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.2.0"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
