package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPGBin is where Debian's postgresql-15 package puts the server
// binaries. GRIDPAY_PG_BIN overrides it.
const DefaultPGBin = "/usr/lib/postgresql/15/bin"

// pgSuperuser is the role initdb creates and every DSN of this package uses.
// Naming it explicitly (initdb -U) keeps DSNs the same whichever OS user ran
// the tests.
const pgSuperuser = "postgres"

// pgSystemUser runs the server when the tests run as root, because initdb
// and postgres refuse to run as root.
const pgSystemUser = "postgres"

// Settings for a throw-away cluster: durability is traded for speed, since
// the data dies with the test binary anyway.
var pgTestSettings = []string{
	"listen_addresses = '127.0.0.1'",
	"fsync = off",
	"synchronous_commit = off",
	"full_page_writes = off",
	"wal_level = minimal",
	"max_wal_senders = 0",
	"checkpoint_timeout = '30min'",
	"max_wal_size = '1GB'",
	"shared_buffers = '64MB'",
	"max_connections = 200",
	"autovacuum = off",
	"timezone = 'UTC'",
	"log_timezone = 'UTC'",
	"log_min_messages = warning",
	"log_min_error_statement = panic",
	"logging_collector = off",
}

// Postgres is a PostgreSQL cluster started by StartPostgres. The cluster
// lives no longer than the process that started it: besides Stop, a small
// watchdog shell stops it (and removes a temporary directory) when that
// process exits for any reason, so a test binary killed by a timeout does not
// leave a server behind.
type Postgres struct {
	// StartupTime is how long initdb plus the first start took.
	StartupTime time.Duration

	dir     string // root of everything below
	dataDir string
	sockDir string
	logFile string
	port    int
	binDir  string
	runAs   string // OS user to run the binaries as; "" = ourselves
	temp    bool   // dir was created by StartPostgres and is removed by Stop

	watchdog      *exec.Cmd
	watchdogStdin io.WriteCloser

	stopOnce sync.Once
	stopErr  error
}

// StartPostgres creates a fresh cluster in dir (which must be missing or
// empty; "" means a new temporary directory, removed again by Stop) and starts
// it on a free port of 127.0.0.1 with trust authentication, its unix socket
// inside dir. The binaries come from $GRIDPAY_PG_BIN, default DefaultPGBin.
// When running as root, the binaries run as the "postgres" system user and
// dir is handed over to that user.
func StartPostgres(dir string) (_ *Postgres, err error) {
	start := time.Now()
	binDir := os.Getenv("GRIDPAY_PG_BIN")
	if binDir == "" {
		binDir = DefaultPGBin
	}
	for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(binDir, tool)); err != nil {
			return nil, fmt.Errorf("testenv.StartPostgres: PostgreSQL server binary %s not found in %s (set GRIDPAY_PG_BIN to the directory holding initdb, or run `make deps` to install PostgreSQL 15): %w", tool, binDir, err)
		}
	}

	p := &Postgres{binDir: binDir}
	if dir == "" {
		dir, err = os.MkdirTemp("", "gridpay-pg-")
		if err != nil {
			return nil, fmt.Errorf("testenv.StartPostgres: %w", err)
		}
		p.temp = true
	} else {
		if dir, err = filepath.Abs(dir); err != nil {
			return nil, fmt.Errorf("testenv.StartPostgres(%q): %w", dir, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("testenv.StartPostgres(%q): %w", dir, err)
		}
		if entries, err := os.ReadDir(dir); err != nil {
			return nil, fmt.Errorf("testenv.StartPostgres(%q): %w", dir, err)
		} else if len(entries) > 0 {
			return nil, fmt.Errorf("testenv.StartPostgres(%q): directory is not empty; a fresh cluster needs an empty directory", dir)
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("testenv.StartPostgres(%q): %w", dir, err)
			if p.temp {
				os.RemoveAll(dir)
			}
		}
	}()
	p.dir = dir
	p.dataDir = filepath.Join(dir, "data")
	p.sockDir = filepath.Join(dir, "sock")
	p.logFile = filepath.Join(dir, "postgres.log")
	// The kernel limits a unix socket path to 107 bytes; the server names
	// its socket ".s.PGSQL.<port>" inside sockDir.
	if n := len(p.sockDir) + len("/.s.PGSQL.65535"); n > 107 {
		return nil, fmt.Errorf("socket path would be %d bytes, over the 107-byte limit of unix sockets; use a shorter directory", n)
	}
	if err := os.Mkdir(p.sockDir, 0o700); err != nil {
		return nil, err
	}

	if os.Geteuid() == 0 {
		p.runAs = pgSystemUser
		if err := handOver(dir, pgSystemUser); err != nil {
			return nil, err
		}
	}

	if err := p.run("initdb",
		"-D", p.dataDir,
		"-U", pgSuperuser,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
		"--no-instructions",
	); err != nil {
		return nil, err
	}
	conf := filepath.Join(p.dataDir, "postgresql.conf")
	extra := "\n# added by gridpay testenv: throw-away test cluster\n" +
		strings.Join(pgTestSettings, "\n") + "\n" +
		fmt.Sprintf("unix_socket_directories = '%s'\n", strings.ReplaceAll(p.sockDir, "'", "''"))
	if err := appendFile(conf, extra); err != nil {
		return nil, err
	}

	if err := p.startWatchdog(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.stopWatchdog(false)
		}
	}()

	// Another process may grab the port between our probe and the server's
	// bind; a fresh port on the next attempt settles that.
	var startErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		startErr = p.run("pg_ctl", "start",
			"-D", p.dataDir,
			"-l", p.logFile,
			"-w", "-t", "60",
			"-o", "-p "+strconv.Itoa(port),
		)
		if startErr == nil {
			p.port = port
			break
		}
	}
	if startErr != nil {
		return nil, fmt.Errorf("%w\nserver log (tail):\n%s", startErr, tail(p.logFile, 20))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.ping(ctx); err != nil {
		p.run("pg_ctl", "stop", "-D", p.dataDir, "-m", "immediate", "-w")
		return nil, fmt.Errorf("server started but does not answer on 127.0.0.1:%d: %w", p.port, err)
	}
	p.StartupTime = time.Since(start)
	return p, nil
}

// Stop stops the server (fast shutdown: open sessions are disconnected) and,
// if StartPostgres created the directory, removes it. It is safe to call more
// than once.
func (p *Postgres) Stop() error {
	p.stopOnce.Do(func() {
		err := p.run("pg_ctl", "stop", "-D", p.dataDir, "-m", "fast", "-w", "-t", "60")
		p.stopWatchdog(err == nil)
		if err != nil {
			p.stopErr = fmt.Errorf("testenv.Postgres.Stop: %w", err)
			return
		}
		if p.temp {
			if err := os.RemoveAll(p.dir); err != nil {
				p.stopErr = fmt.Errorf("testenv.Postgres.Stop: %w", err)
			}
		}
	})
	return p.stopErr
}

// Port is the TCP port the server listens on (127.0.0.1 only).
func (p *Postgres) Port() int { return p.port }

// Dir is the directory holding the cluster, its socket and its log.
func (p *Postgres) Dir() string { return p.dir }

// DSN returns a connection string for database db as the superuser role
// "postgres" over TCP on loopback. Authentication is trust, so there is no
// password.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgSuperuser, p.port, db)
}

// AdminDSN is the DSN of the maintenance database "postgres", for creating
// and dropping databases.
func (p *Postgres) AdminDSN() string { return p.DSN("postgres") }

var dbNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates an empty database (lower-case letters, digits and
// underscores only) and returns its DSN.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (dsn string, err error) {
	if !dbNameRE.MatchString(name) {
		return "", fmt.Errorf("testenv.CreateDatabase(%q): name must match %s", name, dbNameRE)
	}
	if err := p.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("testenv.CreateDatabase(%q): %w", name, err)
	}
	return p.DSN(name), nil
}

// DropDatabase drops a database, disconnecting whoever is still connected.
func (p *Postgres) DropDatabase(ctx context.Context, name string) error {
	if err := p.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("testenv.DropDatabase(%q): %w", name, err)
	}
	return nil
}

func (p *Postgres) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, p.AdminDSN())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// ping connects over TCP, retrying briefly: pg_ctl -w reports readiness from
// postmaster.pid, and a connection proves the listener really is up.
func (p *Postgres) ping(ctx context.Context) error {
	var err error
	for {
		var conn *pgx.Conn
		conn, err = pgx.Connect(ctx, p.AdminDSN())
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// command builds the exec.Cmd for one of the PostgreSQL binaries, switching
// user when needed. The environment is kept minimal so that the caller's
// PGDATA, PGPORT or locale cannot leak into the cluster.
func (p *Postgres) command(tool string, args ...string) *exec.Cmd {
	path := filepath.Join(p.binDir, tool)
	var cmd *exec.Cmd
	if p.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", p.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC"}
	// The postgres user may not be able to enter our working directory.
	cmd.Dir = p.dir
	return cmd
}

func (p *Postgres) run(tool string, args ...string) error {
	cmd := p.command(tool, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", tool, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// watchdogScript waits for its stdin to close. "exit" on stdin means the
// cluster was stopped normally; end of file means the process that started
// the cluster died, so the script stops the server and removes a temporary
// directory on its behalf. It ignores the signals a terminal sends to the
// whole process group.
const watchdogScript = `trap '' INT TERM HUP
IFS= read -r cmd || :
[ "$cmd" = exit ] && exit 0
if [ -n "$GP_RUNAS" ]; then
	runuser -u "$GP_RUNAS" -- "$GP_PGCTL" stop -D "$GP_DATA" -m immediate -w >/dev/null 2>&1
else
	"$GP_PGCTL" stop -D "$GP_DATA" -m immediate -w >/dev/null 2>&1
fi
[ "$GP_REMOVE" = 1 ] && rm -rf -- "$GP_DIR"
exit 0
`

func (p *Postgres) startWatchdog() error {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript)
	remove := "0"
	if p.temp {
		remove = "1"
	}
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"GP_RUNAS=" + p.runAs,
		"GP_PGCTL=" + filepath.Join(p.binDir, "pg_ctl"),
		"GP_DATA=" + p.dataDir,
		"GP_DIR=" + p.dir,
		"GP_REMOVE=" + remove,
	}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	p.watchdog, p.watchdogStdin = cmd, stdin
	return nil
}

// stopWatchdog releases the watchdog; stopped says whether the server is
// already down (otherwise the watchdog gets to stop it).
func (p *Postgres) stopWatchdog(stopped bool) {
	if p.watchdog == nil {
		return
	}
	if stopped {
		io.WriteString(p.watchdogStdin, "exit\n")
	}
	p.watchdogStdin.Close()
	p.watchdog.Wait()
	p.watchdog = nil
}

// handOver gives dir (freshly created, so only its top level) to the system
// user and makes sure that user can reach it. Directories above it that
// are inside the system temporary directory get the search bit for others
// (not read: nobody can list them), since t.TempDir and os.MkdirTemp create
// them 0700; anywhere else a missing search bit is an error to fix by hand.
func handOver(dir, username string) error {
	u, err := user.Lookup(username)
	if err != nil {
		return fmt.Errorf("running as root, so PostgreSQL must run as the %q system user, which is missing (install the postgresql package or run `make deps`): %w", username, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		return err
	}
	tmp, _ := filepath.Abs(os.TempDir())
	for parent := filepath.Dir(dir); ; parent = filepath.Dir(parent) {
		fi, err := os.Stat(parent)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if parent != tmp && strings.HasPrefix(parent, tmp+string(filepath.Separator)) {
				if err := os.Chmod(parent, fi.Mode().Perm()|0o001); err != nil {
					return err
				}
			} else if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
				return fmt.Errorf("the %q user cannot enter %s (mode %v); choose a directory whose parents are searchable by others, e.g. under %s", username, parent, fi.Mode().Perm(), tmp)
			}
		}
		if parent == filepath.Dir(parent) {
			return nil
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func appendFile(name, text string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func tail(name string, n int) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// The per-test-binary cluster behind PostgresForTest.
var shared struct {
	sync.Mutex
	pg  *Postgres
	err error
	dbs int
}

// PostgresForTest returns the cluster shared by all tests of this test
// binary, starting it on first use. A start failure fails the test (and every
// later caller) with the reason; it never skips.
//
// The cluster outlives individual tests, so stop it after m.Run:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testenv.StopPostgresForTest()
//		os.Exit(code)
//	}
//
// Forgetting StopPostgresForTest leaks nothing for long: the watchdog stops
// the server and removes its directory when the test binary exits.
func PostgresForTest(tb testing.TB) *Postgres {
	tb.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.pg == nil && shared.err == nil {
		shared.pg, shared.err = StartPostgres("")
		if shared.err == nil {
			tb.Logf("testenv: PostgreSQL started in %v on 127.0.0.1:%d (dir %s)",
				shared.pg.StartupTime.Round(time.Millisecond), shared.pg.port, shared.pg.dir)
		}
	}
	if shared.err != nil {
		tb.Fatalf("testenv: cannot start PostgreSQL: %v", shared.err)
	}
	return shared.pg
}

// NewDatabase creates a fresh, uniquely named database in the shared cluster
// for this test and returns its DSN. The database is dropped when the test
// ends (after the test's own cleanups, so close pools with t.Cleanup or
// defer).
func NewDatabase(tb testing.TB) (dsn string) {
	tb.Helper()
	pg := PostgresForTest(tb)
	shared.Lock()
	shared.dbs++
	n := shared.dbs
	shared.Unlock()
	name := databaseName(tb.Name(), n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := pg.CreateDatabase(ctx, name)
	if err != nil {
		tb.Fatalf("testenv.NewDatabase: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pg.DropDatabase(ctx, name); err != nil {
			tb.Errorf("testenv.NewDatabase cleanup: %v", err)
		}
	})
	return dsn
}

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// databaseName makes a valid, unique identifier that still tells a human
// which test a database belongs to: t_<test name>_<n>_<random>.
func databaseName(testName string, n int) string {
	base := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(testName), "_"), "_")
	if len(base) > 36 {
		base = base[:36]
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	return fmt.Sprintf("t_%s_%d_%s", base, n, hex.EncodeToString(rnd[:]))
}

// StopPostgresForTest stops the cluster started by PostgresForTest, if any.
// Call it from TestMain after m.Run.
func StopPostgresForTest() error {
	shared.Lock()
	defer shared.Unlock()
	if shared.pg == nil {
		return nil
	}
	err := shared.pg.Stop()
	shared.pg, shared.err = nil, errors.New("testenv.StopPostgresForTest already stopped the shared cluster")
	return err
}
