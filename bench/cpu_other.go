//go:build !unix

package main

import "time"

type cpuSample struct {
	at      time.Time
	self    time.Duration
	busy    time.Duration
	hasBusy bool
}

func sampleCPU() cpuSample { return cpuSample{at: time.Now()} }

func loadAvg() string { return "" }
