package sdnotify_test

import (
	"log"
	"net"

	"github.com/rollbridge/rollbridge/sdnotify"
)

// A daemon takes back the listener it stored before a crash, or binds a
// new one and stores it, then says it is ready.
func Example() {
	files, err := sdnotify.Listen() // first, before starting any process
	if err != nil {
		log.Printf("descriptors from the service manager: %v", err)
	}
	var ln net.Listener
	if fs := files["proxy"]; len(fs) == 1 {
		ln, err = net.FileListener(fs[0]) // duplicates; close the file
		fs[0].Close()
	}
	if ln == nil || err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			log.Fatal(err)
		}
	}
	defer ln.Close()
	if f, err := ln.(*net.TCPListener).File(); err == nil {
		if err := sdnotify.Store("proxy", f); err != nil {
			log.Printf("fd store refused: %v", err)
		}
		f.Close() // the manager holds its own duplicate
	}
	for name, fs := range files { // close what nobody took
		for _, f := range fs {
			if name != "proxy" {
				f.Close()
			}
		}
	}
	sdnotify.Notify("READY=1")
}
