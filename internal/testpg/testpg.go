// Package testpg gives tests a throwaway PostgreSQL: one private cluster per test binary, started
// lazily on a free loopback port from the server binaries installed on the machine, and one fresh
// database per call to New.
//
// PostgreSQL refuses to run as root. When the test runs as root, initdb and the postmaster run as
// the "postgres" system user (or "nobody" when that user is missing): the process credentials are
// switched by the kernel at exec time, so no runuser/sudo is involved. The postmaster is started
// with a parent-death signal, so a test binary that is killed or panics does not leave a server
// behind; Main stops it and removes its directory on a normal exit.
//
// Use it from a package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }
//
// When no server binaries are found, New skips the test with a loud message, unless the
// environment sets OTPD_TEST_REQUIRE_POSTGRES=1, in which case it fails the test. The binaries are
// looked up in $OTPD_TEST_PG_BIN, then /usr/lib/postgresql/*/bin (newest), then $PATH.
package testpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Environment variables read by this package.
const (
	// EnvRequire set to "1" turns a missing PostgreSQL into a test failure instead of a skip.
	EnvRequire = "OTPD_TEST_REQUIRE_POSTGRES"
	// EnvBinDir names a directory holding initdb and postgres, overriding the search.
	EnvBinDir = "OTPD_TEST_PG_BIN"
)

// SkipMessage is what New and Main say when no server binaries are found.
const SkipMessage = "PostgreSQL server binaries not found: SKIPPING PostgreSQL tests " +
	"(install the postgresql server package, or set " + EnvBinDir + "; set " + EnvRequire +
	"=1 to make this a failure)"

const dirPrefix = "otpd-testpg-"

var (
	startOnce sync.Once
	theClu    *cluster
	startErr  error

	dbSeq   atomic.Int64
	skipped atomic.Bool

	errUnavailable = errors.New(SkipMessage)
)

// Available reports whether PostgreSQL server binaries were found, and where.
func Available() (binDir string, ok bool) {
	dir := findBinDir()
	return dir, dir != ""
}

// Required reports whether the environment demands PostgreSQL tests run (OTPD_TEST_REQUIRE_POSTGRES=1).
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// New returns the DSN of a fresh, empty database in this test binary's cluster, starting the
// cluster on first use. The database is dropped when the test ends. Without server binaries the
// test is skipped (or fails when OTPD_TEST_REQUIRE_POSTGRES=1).
func New(tb testing.TB) string {
	tb.Helper()
	c, err := ensureCluster()
	if errors.Is(err, errUnavailable) {
		if Required() {
			tb.Fatal(SkipMessage + " — but " + EnvRequire + "=1")
		}
		skipped.Store(true)
		tb.Skip(SkipMessage)
	}
	if err != nil {
		tb.Fatalf("testpg: %v", err)
	}
	name := dbName(tb.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.adminExec(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		tb.Fatalf("testpg: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE ends sessions a test forgot to close; the database is scratch anyway.
		if err := c.adminExec(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			tb.Logf("testpg: drop database %s: %v", name, err)
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

// Main runs the tests, then stops the cluster (if one was started) and removes its files. It
// prints SkipMessage once when no server binaries were found. Use it in every package that
// calls New:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	Shutdown()
	if _, ok := Available(); !ok || skipped.Load() {
		fmt.Fprintln(os.Stderr, "WARNING: "+SkipMessage)
	}
	return code
}

// Shutdown stops this binary's cluster and removes its directory. Main calls it; call it
// yourself from a TestMain that cannot use Main. It is safe to call more than once.
func Shutdown() {
	// Make sure a later New does not start a cluster behind our back.
	startOnce.Do(func() { startErr = errors.New("testpg: shut down") })
	if theClu != nil {
		theClu.stop()
	}
}

// dbName makes a valid, unique, unquoted-safe database name from a test name.
func dbName(test string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "t%d_", dbSeq.Add(1))
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 60 {
			break
		}
	}
	return b.String()
}

func findBinDir() string {
	ok := func(dir string) bool {
		for _, exe := range []string{"initdb", "postgres"} {
			fi, err := os.Stat(filepath.Join(dir, exe))
			if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv(EnvBinDir); dir != "" {
		if ok(dir) {
			return dir
		}
		return ""
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first: compare numerically, "15" > "9.6".
	ver := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		switch va, vb := ver(a), ver(b); {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	for _, d := range dirs {
		if ok(d) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && ok(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	return ""
}

type cluster struct {
	bin, dir, data, sock string
	port                 int
	cred                 *syscall.Credential // nil: run as ourselves
	cmd                  *exec.Cmd
	exited               chan struct{}
	logFile              *os.File

	adminMu sync.Mutex
	admin   *pgconn.PgConn

	stopOnce sync.Once
}

func ensureCluster() (*cluster, error) {
	startOnce.Do(func() {
		bin := findBinDir()
		if bin == "" {
			startErr = errUnavailable
			return
		}
		theClu, startErr = start(bin)
	})
	return theClu, startErr
}

func start(bin string) (*cluster, error) {
	cleanStaleDirs()
	c := &cluster{bin: bin, exited: make(chan struct{})}
	var err error
	if os.Geteuid() == 0 {
		if c.cred, err = unprivileged(); err != nil {
			return nil, err
		}
	}
	if c.dir, err = os.MkdirTemp(tempRoot(), dirPrefix); err != nil {
		return nil, fmt.Errorf("testpg: %w", err)
	}
	// Lets a later run tell whether the binary that made this directory is still alive.
	if err := os.WriteFile(filepath.Join(c.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, c.fail(err)
	}
	c.data = filepath.Join(c.dir, "data")
	c.sock = c.dir
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, c.fail(err)
		}
	}
	t0 := time.Now()
	initdb := exec.Command(filepath.Join(bin, "initdb"),
		"-D", c.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--no-locale")
	initdb.Dir = c.dir
	initdb.Env = childEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, c.fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	if c.logFile, err = os.Create(filepath.Join(c.dir, "postgres.log")); err != nil {
		return nil, c.fail(err)
	}
	// Another process may grab the port between our probe and the server's bind; try a few.
	for try := 0; ; try++ {
		err = c.startServer()
		if err == nil {
			break
		}
		if try == 4 {
			return nil, c.fail(err)
		}
		c.exited = make(chan struct{})
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "testpg: PostgreSQL (%s) on 127.0.0.1:%d ready in %v\n", bin, c.port, time.Since(t0).Round(time.Millisecond))
	}
	return c, nil
}

// fail removes what start made so far and returns err.
func (c *cluster) fail(err error) error {
	c.stop()
	return fmt.Errorf("testpg: %w", err)
}

func (c *cluster) startServer() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.port = port
	args := []string{
		"-D", c.data,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + c.sock,
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=32MB",
		"-c", "autovacuum=off",
		"-c", "wal_level=minimal",
		"-c", "max_wal_senders=0",
		"-c", "max_wal_size=1GB",
		"-c", "log_min_messages=warning",
		"-c", "logging_collector=off",
	}
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), args...)
	cmd.Dir = c.dir
	cmd.Env = childEnv()
	cmd.Stdout = c.logFile
	cmd.Stderr = c.logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: c.cred,
		// SIGQUIT is PostgreSQL's immediate shutdown: when this test binary dies, the postmaster
		// takes its backends down and exits instead of running forever.
		Pdeathsig: syscall.SIGQUIT,
		Setpgid:   true,
	}
	if err := startWithDeathSignal(cmd); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.cmd = cmd
	exited := c.exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("postgres exited during startup:\n%s", c.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgconn.Connect(ctx, dsn)
		cancel()
		if err == nil {
			c.admin = conn
			return nil
		}
		if time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("postgres not ready after 60s: %v\n%s", err, c.logTail())
		}
		time.Sleep(15 * time.Millisecond)
	}
}

func (c *cluster) adminExec(ctx context.Context, sql string) error {
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	if c.admin == nil || c.admin.IsClosed() {
		return errors.New("cluster is stopped")
	}
	_, err := c.admin.Exec(ctx, sql).ReadAll()
	return err
}

func (c *cluster) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// kill asks for an immediate shutdown and waits; SIGKILL if that does not end it.
func (c *cluster) kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

func (c *cluster) stop() {
	c.stopOnce.Do(func() {
		c.adminMu.Lock()
		if c.admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = c.admin.Close(ctx)
			cancel()
		}
		c.adminMu.Unlock()
		c.kill()
		if c.logFile != nil {
			_ = c.logFile.Close()
		}
		if c.dir != "" {
			_ = os.RemoveAll(c.dir)
		}
	})
}

// The parent-death signal fires when the OS thread that forked the child exits, not the process.
// So every server is forked from one goroutine locked to its thread for the life of the binary.
var (
	spawnOnce sync.Once
	spawnReq  chan spawnCall
)

type spawnCall struct {
	cmd  *exec.Cmd
	done chan error
}

func startWithDeathSignal(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReq = make(chan spawnCall)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the binary
			for call := range spawnReq {
				call.done <- call.cmd.Start()
			}
		}()
	})
	call := spawnCall{cmd: cmd, done: make(chan error, 1)}
	spawnReq <- call
	return <-call.done
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// unprivileged returns the credentials of the "postgres" system user, or "nobody".
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return nil, errors.New("running as root and neither a postgres nor a nobody user exists to run PostgreSQL as")
}

// tempRoot is where cluster directories go: os.TempDir, unless an unprivileged server user could
// not reach it (a root-only TMPDIR), then /tmp.
func tempRoot() string {
	dir := os.TempDir()
	if os.Geteuid() != 0 {
		return dir
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}

// childEnv is our environment without PG* variables, which would redirect initdb or the server.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

// cleanStaleDirs removes cluster directories left by test binaries that died before Main ran,
// once their server is gone too. It never signals anything.
func cleanStaleDirs() {
	matches, _ := filepath.Glob(filepath.Join(tempRoot(), dirPrefix+"*"))
	for _, dir := range matches {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
		if err != nil || alive(pid) {
			continue
		}
		if pm, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			line, _, _ := bytes.Cut(pm, []byte("\n"))
			if p, err := strconv.Atoi(string(bytes.TrimSpace(line))); err == nil && alive(p) {
				continue
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
