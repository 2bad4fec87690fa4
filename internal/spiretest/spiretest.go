// Package spiretest runs a real spire-server (and spire-agent) from bin/ for tests: sqlite
// datastore and admin socket in a temporary directory, TCP bound to loopback only.
package spiretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/custody-dev/custody/internal/testenv"
)

// TrustDomain is the trust domain of test servers.
const TrustDomain = "example.org"

// Server is a running spire-server.
type Server struct {
	// Dir holds the configuration, data, sockets and log.
	Dir string
	// Socket is the admin API socket path; Address is "unix://" + Socket.
	Socket  string
	Address string
	// Port is the TCP port of the server API (agents connect to it) on 127.0.0.1.
	Port int

	proc *proc
}

// proc is a running child process in its own process group, logging to a file.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(name, logPath string, args ...string) (*proc, error) {
	bin, err := testenv.Binary(name)
	if err != nil {
		return nil, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600) //nolint:gosec // our own directory
	if err != nil {
		return nil, err
	}
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})} //nolint:gosec // a pinned binary from bin/
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("spiretest: starting %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		_ = log.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM to the process group, then SIGKILL after 10 s.
func (p *proc) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

var serverConf = template.Must(template.New("server").Parse(`server {
  bind_address = "127.0.0.1"
  bind_port = "{{.Port}}"
  socket_path = "{{.Socket}}"
  trust_domain = "` + TrustDomain + `"
  data_dir = "{{.Dir}}/data"
  log_level = "WARN"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
  experimental {
    # Custody's recommended settings for fast propagation of entry changes (docs/identity.md).
    events_based_cache = true
    cache_reload_interval = "1s"
  }
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "{{.Dir}}/data/datastore.sqlite3"
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`))

// StartServer starts a spire-server in a new temporary directory and waits until its Entry API
// answers. Stop it with Stop.
func StartServer(ctx context.Context) (*Server, error) {
	// Unix socket paths are limited to about 100 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		return nil, err
	}
	return StartServerIn(ctx, dir, "api.sock")
}

// StartServerIn starts a spire-server with its configuration, data and log in dir and its admin
// socket at dir/socket.
func StartServerIn(ctx context.Context, dir, socket string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Socket: filepath.Join(dir, socket), Port: port}
	if len(s.Socket) > 100 {
		return nil, fmt.Errorf("spiretest: the socket path %s is too long for a unix socket", s.Socket)
	}
	s.Address = "unix://" + s.Socket
	var conf bytes.Buffer
	if err := serverConf.Execute(&conf, s); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "server.conf"), conf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		return s, err
	}
	return s, nil
}

// Start starts (or restarts after Stop) the server with the same configuration and data.
func (s *Server) Start(ctx context.Context) error {
	p, err := startProc("spire-server", filepath.Join(s.Dir, "server.log"),
		"run", "-config", filepath.Join(s.Dir, "server.conf"))
	if err != nil {
		return err
	}
	s.proc = p
	return s.waitReady(ctx)
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := s.Conn()
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	entries := entryv1.NewEntryClient(conn)
	for {
		_, err := entries.CountEntries(ctx, &entryv1.CountEntriesRequest{})
		if err == nil {
			return nil
		}
		select {
		case <-s.proc.done:
			return fmt.Errorf("spiretest: spire-server exited; see %s", filepath.Join(s.Dir, "server.log"))
		case <-ctx.Done():
			return fmt.Errorf("spiretest: spire-server not ready: %w (log: %s)", err, s.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Conn opens a gRPC connection to the admin socket.
func (s *Server) Conn() (*grpc.ClientConn, error) {
	return grpc.NewClient(s.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s); the data stays for Start.
func (s *Server) Stop() error {
	if s.proc != nil {
		s.proc.stop()
		s.proc = nil
	}
	return nil
}

// Close stops the server and removes its directory (unless CUSTODY_KEEP_SPIRE is set).
func (s *Server) Close() error {
	err := s.Stop()
	if os.Getenv("CUSTODY_KEEP_SPIRE") == "" {
		err = errors.Join(err, os.RemoveAll(s.Dir))
	}
	return err
}

// Log returns the last part of the server's log, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log")) //nolint:gosec // our own directory
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

// CLI runs spire-server's command line against the admin socket (for example
// "token", "generate", "-spiffeID", ...).
func (s *Server) CLI(ctx context.Context, args ...string) (string, error) {
	bin, err := testenv.Binary("spire-server")
	if err != nil {
		return "", err
	}
	full := append([]string{args[0], args[1], "-socketPath", s.Socket}, args[2:]...)
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput() //nolint:gosec // a pinned binary from bin/
	if err != nil {
		return "", fmt.Errorf("spire-server %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Agent is a running spire-agent attested to a Server with a join token, serving the Workload
// API on a unix socket and attesting workloads with the unix attestor.
type Agent struct {
	Dir string
	// Socket is the Workload API socket; ID is the agent's SPIFFE ID (the parent of entries for
	// workloads it serves).
	Socket string
	ID     string

	proc *proc
}

var agentConf = template.Must(template.New("agent").Parse(`agent {
  data_dir = "{{.Dir}}/data"
  log_level = "WARN"
  server_address = "127.0.0.1"
  server_port = "{{.Port}}"
  socket_path = "{{.Socket}}"
  trust_domain = "` + TrustDomain + `"
  insecure_bootstrap = true
  experimental {
    # Custody's recommended setting for fast propagation of entry changes (docs/identity.md).
    sync_interval = "{{.SyncInterval}}"
  }
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`))

// StartAgent starts a spire-agent for the server, with a fresh join token, and waits until its
// Workload API socket exists. syncInterval is the agent's experimental sync_interval.
func (s *Server) StartAgent(ctx context.Context, syncInterval time.Duration) (*Agent, error) {
	out, err := s.CLI(ctx, "token", "generate", "-ttl", "600")
	if err != nil {
		return nil, err
	}
	// "Token: <uuid>" and a warning that no alias SPIFFE ID was given (the agent ID is used).
	var token string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Token:"); ok {
			token = strings.TrimSpace(v)
		}
	}
	if token == "" {
		return nil, fmt.Errorf("spiretest: no token in %q", out)
	}
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		return nil, err
	}
	a := &Agent{Dir: dir, Socket: filepath.Join(dir, "agent.sock"),
		ID: "spiffe://" + TrustDomain + "/spire/agent/join_token/" + token}
	var conf bytes.Buffer
	if err := agentConf.Execute(&conf, map[string]any{"Dir": dir, "Port": s.Port, "Socket": a.Socket,
		"SyncInterval": syncInterval.String()}); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "agent.conf"), conf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc("spire-agent", filepath.Join(dir, "agent.log"),
		"run", "-config", filepath.Join(dir, "agent.conf"), "-joinToken", token)
	if err != nil {
		return nil, err
	}
	a.proc = p
	deadline := time.After(time.Minute)
	for {
		if _, err := os.Stat(a.Socket); err == nil {
			return a, nil
		}
		select {
		case <-a.proc.done:
			b, _ := os.ReadFile(filepath.Join(dir, "agent.log")) //nolint:gosec // our own directory
			return nil, fmt.Errorf("spiretest: spire-agent exited:\n%s", b)
		case <-deadline:
			_ = a.Close()
			return nil, errors.New("spiretest: spire-agent's socket did not appear within a minute")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops the agent and removes its directory.
func (a *Agent) Close() error {
	a.proc.stop()
	return os.RemoveAll(a.Dir)
}
