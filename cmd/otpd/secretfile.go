package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSecretFile bounds what a --…-file flag reads: a seed, a PIN or a client secret is short.
const maxSecretFile = 4096

// readSecretFile reads a secret given as a file name, or "-" for standard input, so it never
// appears on the command line (ps, shell history). The trailing line break an editor or echo
// leaves is dropped.
func readSecretFile(e *env, what, path string) (string, error) {
	var (
		raw []byte
		err error
	)
	if path == "-" {
		raw, err = io.ReadAll(io.LimitReader(e.stdin, maxSecretFile+1))
	} else {
		var f *os.File
		if f, err = os.Open(path); err == nil {
			raw, err = io.ReadAll(io.LimitReader(f, maxSecretFile+1))
			f.Close()
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if len(raw) > maxSecretFile {
		return "", fmt.Errorf("%s: longer than %d bytes", what, maxSecretFile)
	}
	return strings.TrimRight(string(raw), "\r\n"), nil
}

// warnSecretFlag tells the operator that a secret given as a flag value is visible to other
// users of the machine and stays in the shell history.
func warnSecretFlag(e *env, flagName, fileFlag string) {
	fmt.Fprintf(e.stderr, "warning: --%s puts a secret on the command line, where ps and the shell history see it; "+
		"use --%s FILE (- for standard input) instead\n", flagName, fileFlag)
}
