// Command sandbox runs Custody on an embedded local cluster with the sample workflows
// (`make sandbox`), or in the background until `make sandbox-down` (`-up`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/custody-dev/custody/internal/sandbox"
)

func main() {
	dir := flag.String("dir", "bin/sandbox", "Directory for the sandbox's state: kubeconfig, logs, SPIRE data and socket.")
	up := flag.Bool("up", false,
		"Run in the background: write <dir>/ready when the samples were applied, then keep running until SIGINT or SIGTERM.")
	flag.Parse()
	if err := run(*dir, *up); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

func run(dir string, up bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if pid, err := os.ReadFile(filepath.Join(abs, "pid")); err == nil { //nolint:gosec // our own state
		if n, err := strconv.Atoi(string(pid)); err == nil && syscall.Kill(n, 0) == nil {
			return fmt.Errorf("a sandbox is already running (pid %d): stop it with `make sandbox-down`", n)
		}
	}
	// Start from a clean state: nothing of an earlier sandbox is reused.
	if err := os.RemoveAll(abs); err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return err
	}
	if up {
		if err := os.WriteFile(filepath.Join(abs, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	sb, err := sandbox.Start(ctx, abs, os.Stdout)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("==> stopping the manager, the cluster and SPIRE")
		if err := sb.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "sandbox: stopping:", err)
		}
	}()
	fmt.Println("==> applying config/samples into namespace", sandbox.Namespace)
	if err := sb.ApplySamples(ctx); err != nil {
		return fmt.Errorf("%w\n%s", err, sb.ManagerLogTail())
	}
	fmt.Printf("\nReady after %s. Try, in another shell:\n  bin/kubectl --kubeconfig %s get cwf,cgrant -n %s\n"+
		"  bin/spire-server entry show -socketPath %s\n\n", time.Since(start).Round(time.Second), sb.Kubeconfig,
		sandbox.Namespace, sb.SPIRE.Socket)
	if up {
		if err := os.WriteFile(filepath.Join(abs, "ready"), []byte(sb.Kubeconfig+"\n"), 0o600); err != nil {
			return err
		}
	}
	wfs, err := sb.Watch(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, sb.ManagerLogTail())
	}
	fmt.Printf("\n==> every sample finished after %s:\n", time.Since(start).Round(time.Second))
	for _, wf := range wfs {
		fmt.Printf("    %s: %s\n", wf.Name, wf.Status.Phase)
	}
	time.Sleep(2 * time.Second) // revocations trail the last status by a moment
	if left, err := sb.Leftovers(ctx); err == nil {
		fmt.Println("    left behind:", left)
	}
	fmt.Println("\nThe cluster keeps running; Ctrl-C stops everything the sandbox started.")
	<-ctx.Done()
	return nil
}
