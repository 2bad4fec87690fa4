// Command kubectl-custody is the kubectl plugin for Custody: `kubectl custody get|approve|cancel|
// revoke|inventory`. Install it on PATH with `make install-plugin`.
package main

import (
	"fmt"
	"os"
	_ "time/tzdata" // lint reads CronWorkflows' time zones, also on CI machines without zoneinfo

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/custody-dev/custody/internal/cli"
)

func main() {
	cmd := cli.NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
