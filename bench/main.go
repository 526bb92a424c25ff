// Command bench is otpd's load benchmark (SPEC.md §5). It drives an otpd over loopback —
// one it starts in-process on SQLite, or a running one given with -addr — and, right before,
// a minimal net/http JSON handler as the baseline, with the same load generator, concurrency
// and duration. It prints one line per scenario:
//
//	scenario=<name> rps=<n> p50_ms=<n> p99_ms=<n> baseline_rps=<n> ratio=<n>
//
// Lines starting with "#" are facts about the machine and the run, and warnings.
//
//	go run ./bench                                   # every scenario, 10 s each, 32 workers
//	go run ./bench -scenarios check -duration 30s
//	go run ./bench -addr 127.0.0.1:8080 -api-key "$OTPD_API_KEY"
//	go run ./bench -cpuprofile /tmp/cpu.pprof        # writes /tmp/cpu.<scenario>.pprof
//
// Scenarios (native API, channel none, so no delivery is involved):
//
//   - start: POST /v1/verifications with a recipient no other request uses → 201.
//   - check: POST /v1/verifications/{id}/check with the right code → 200 valid:true, each on a
//     session created for it before the timed phase (one successful check per session).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// allScenarios in the order they run. A scenario file adds itself with register in an init
// function.
var allScenarios []string

// scenarioFunc runs one scenario against t and returns its timed result.
type scenarioFunc func(ctx context.Context, o options, t target, tag string, progress func(string, ...any)) (*result, error)

var scenarioFuncs = map[string]scenarioFunc{}

// register adds a scenario; the order of registration is the order of the default run.
func register(name string, f scenarioFunc) {
	allScenarios = append(allScenarios, name)
	scenarioFuncs[name] = f
}

func init() {
	register("start", func(ctx context.Context, o options, t target, tag string, progress func(string, ...any)) (*result, error) {
		progress("start: %s warm-up, %s timed", o.warmup, o.duration)
		return timed(ctx, o, "start", t, startLoad(tag))
	})
	register("check", checkScenario)
}

type options struct {
	duration    time.Duration
	warmup      time.Duration
	concurrency int
	addr        string
	apiKey      string
	scenarios   []string
	cpuprofile  string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "timed `length` of each scenario (and of the baseline)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "untimed `length` of load before each timed run")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent `clients`, each with its own keep-alive connection")
	fs.StringVar(&o.addr, "addr", "", "`host:port` of a running otpd (default: start one in-process on SQLite in a temp dir)")
	fs.StringVar(&o.apiKey, "api-key", "", "API `key` for -addr (env OTPD_API_KEY)")
	list := fs.String("scenarios", strings.Join(allScenarios, ","), "comma-separated `list` of scenarios: "+strings.Join(allScenarios, ", "))
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of each timed run to `file` with the scenario name inserted (cpu.pprof → cpu.check.pprof)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.duration <= 0 || o.warmup < 0 {
		return o, errors.New("-duration must be positive and -warmup not negative")
	}
	if o.concurrency < 1 {
		return o, errors.New("-concurrency must be at least 1")
	}
	if o.addr != "" && o.apiKey == "" {
		o.apiKey = os.Getenv("OTPD_API_KEY")
		if o.apiKey == "" {
			return o, errors.New("-addr needs -api-key (or OTPD_API_KEY)")
		}
	}
	seen := map[string]bool{}
	for _, s := range strings.Split(*list, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "" || s == "baseline" || seen[s]: // the baseline always runs
		case slices.Contains(allScenarios, s):
			seen[s] = true
		default:
			return o, fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(allScenarios, ", "))
		}
	}
	for _, s := range allScenarios {
		if seen[s] {
			o.scenarios = append(o.scenarios, s)
		}
	}
	return o, nil
}

// run is the whole benchmark. It returns an error after printing every line when a run had
// errors or ran out of sessions, so a script notices.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	say := func(format string, a ...any) {
		fmt.Fprintf(out, format+"\n", a...)
		out.Flush()
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }

	tag, err := runID()
	if err != nil {
		return err
	}
	database := "unknown (remote otpd at " + o.addr + ")"
	headers := http.Header{"Content-Type": {"application/json"}}
	addr, key := o.addr, o.apiKey
	remote := addr != ""
	if addr == "" {
		srv, err := startInProcess(ctx, stderr)
		if err != nil {
			return err
		}
		defer func() {
			if err := srv.stop(); err != nil {
				progress("stopping otpd: %v", err)
			}
		}()
		addr, key = srv.addr, srv.apiKey
		database = "sqlite (in-process otpd, default config, data in a temp dir)"
	}
	headers.Set("X-Api-Key", key)

	say("# bench GOMAXPROCS=%d cpus=%d cpu=%q go=%s os=%s/%s database=%q concurrency=%d duration=%s warmup=%s loadavg=%q",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH, database,
		o.concurrency, o.duration, o.warmup, loadAvg())

	var problems []string
	report := func(name string, r *result, baseRPS float64) {
		ratio := 1.0
		if baseRPS > 0 {
			ratio = r.rps() / baseRPS
		}
		say("scenario=%s rps=%.0f p50_ms=%.3f p99_ms=%.3f baseline_rps=%.0f ratio=%.3f",
			name, r.rps(), ms(r.quantile(0.50)), ms(r.quantile(0.99)), baseRPS, ratio)
		self, others := "load generator + server", "other processes"
		if remote && name != "baseline" {
			self, others = "load generator", "other processes incl. otpd"
		}
		if r.hasOthers {
			say("# scenario=%s cpu_cores: this process %.2f (%s), %s %.2f", name, r.cpuSelf, self, others, r.cpuOthers)
			if r.cpuOthers > 0.2 && !(remote && name != "baseline") {
				say("# warning: other processes used %.2f cores during scenario=%s; its figures are disturbed", r.cpuOthers, name)
			}
		} else {
			say("# scenario=%s cpu_cores: this process %.2f (%s)", name, r.cpuSelf, self)
		}
		if r.errs > 0 {
			say("# !!! ERRORS in scenario=%s: %d of %d requests failed (%.2f%%), not counted above: %s",
				name, r.errs, r.errs+r.ok, 100*float64(r.errs)/float64(r.errs+r.ok), r.errorSummary())
			problems = append(problems, fmt.Sprintf("%s: %d errors", name, r.errs))
		}
		if r.ok == 0 {
			problems = append(problems, name+": no successful request")
		}
	}

	// The baseline, right before the scenarios.
	baseAddr, stopBase, err := startBaseline(ctx)
	if err != nil {
		return err
	}
	bt := target{rt: newTransport(o.concurrency), scheme: "http", host: baseAddr, headers: headers}
	progress("baseline: %s warm-up, %s timed, %d clients", o.warmup, o.duration, o.concurrency)
	base, err := timed(ctx, o, "baseline", bt, baselineLoad())
	bt.rt.(*http.Transport).CloseIdleConnections()
	if serr := stopBase(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	report("baseline", base, base.rps())

	t := target{rt: newTransport(o.concurrency), scheme: "http", host: addr, headers: headers}
	defer t.rt.(*http.Transport).CloseIdleConnections()
	for _, name := range o.scenarios {
		if ctx.Err() != nil {
			break
		}
		r, err := scenarioFuncs[name](ctx, o, t, tag, progress)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", name, err)
		}
		report(name, r, base.rps())
		if r.exhausted {
			say("# !!! scenario=%s ran out of pre-created sessions after %.1fs of %s; the figures cover that time only",
				name, r.elapsed.Seconds(), o.duration)
			problems = append(problems, name+": ran out of sessions")
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("the benchmark is not clean: %s", strings.Join(problems, "; "))
	}
	return nil
}

// timed runs l untimed for the warm-up, then timed for the duration, under the CPU profiler
// when asked.
func timed(ctx context.Context, o options, name string, t target, l load) (*result, error) {
	if o.warmup > 0 {
		generate(ctx, t, l, o.concurrency, o.warmup)
	}
	if o.cpuprofile != "" {
		ext := filepath.Ext(o.cpuprofile)
		path := strings.TrimSuffix(o.cpuprofile, ext) + "." + name + ext
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	before := sampleCPU()
	r := generate(ctx, t, l, o.concurrency, o.duration)
	after := sampleCPU()
	if wall := after.at.Sub(before.at).Seconds(); wall > 0 {
		r.cpuSelf = (after.self - before.self).Seconds() / wall
		if before.hasBusy && after.hasBusy {
			r.cpuOthers = max(0, (after.busy-before.busy).Seconds()/wall-r.cpuSelf)
			r.hasOthers = true
		}
	}
	return r, ctx.Err()
}

// checkScenario pre-creates the sessions the check run will use — enough for the warm-up and
// the timed run at the rate a short calibration measured, with a margin — then runs it.
func checkScenario(ctx context.Context, o options, t target, tag string, progress func(string, ...any)) (*result, error) {
	c := newCreator(t, tag, o.concurrency)
	defer c.close()
	p := &pool{}

	calib := min(time.Second, o.duration)
	calibN := max(64*o.concurrency, 1000)
	progress("check: creating %d sessions for a %s calibration", calibN, calib)
	t0 := time.Now()
	if err := c.fill(ctx, p, calibN, o.concurrency); err != nil {
		return nil, err
	}
	createRate := float64(calibN) / time.Since(t0).Seconds()
	cal := generate(ctx, t, checkLoad(p), o.concurrency, calib)
	if cal.errs > 0 {
		return nil, fmt.Errorf("calibration failed: %s", cal.errorSummary())
	}
	rate := float64(cal.ok) / cal.elapsed.Seconds()
	need := int(math.Ceil(rate*(o.warmup+o.duration).Seconds()*1.5)) + 4*o.concurrency - p.left()
	if need > 0 {
		progress("check: calibration %.0f checks/s; creating %d more sessions (about %.0fs at %.0f starts/s)",
			rate, need, float64(need)/createRate, createRate)
		if err := c.fill(ctx, p, need, o.concurrency); err != nil {
			return nil, err
		}
	}
	progress("check: %d sessions ready; %s warm-up, %s timed", p.left(), o.warmup, o.duration)
	return timed(ctx, o, "check", t, checkLoad(p))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuModel is the first "model name" of /proc/cpuinfo, or "unknown".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
