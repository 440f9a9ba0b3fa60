package main

import "math/rand/v2"

// randomPortWindow is a window of size ports picked at random among the
// windows of [lo, hi]. Tests that run at the same time as other test runs
// (other engineers, CI) each take their own window: with one fixed
// window, a web process that never listens leaves its port free, and
// another run's web process that binds it answers this run's health
// check.
func randomPortWindow(lo, hi, size int) (from, to int) {
	from = lo + size*rand.IntN((hi-lo+1)/size)
	return from, from + size - 1
}

// privateFrom-privateTo is a window of 20 ports in 25000-29999, a range
// no other test uses, for tests whose web process does not listen or must
// not be answered by another test's. It is picked once per test binary,
// so that a test that rewrites its config keeps the same ports (a port
// change needs a daemon restart); the tests of one run use it one after
// the other.
var privateFrom, privateTo = randomPortWindow(25000, 29999, 20)

func privatePorts() (from, to int) { return privateFrom, privateTo }
