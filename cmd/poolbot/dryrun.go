package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/config"
	"poolbot/procedure"
	"poolbot/store"
)

const dryRunUsage = "usage: poolbot dry-run [-config FILE] <depool|pool> <service> <dc>\n" +
	"       poolbot dry-run [-config FILE] restart <service>\n" +
	"exit status: 0 it would start now; 3 it would wait (a gate is closed) or a registry instance is unhealthy now;\n" +
	"             1 an error (config, store, a backend); 2 bad usage\n"

// Exit statuses of dry-run besides 0 (it would start now), 1 (an error)
// and 2 (bad usage).
const exitWouldWait = 3

// runDryRun prints what a request would do now without changing anything:
// the gates evaluated for real (calendar fetched, scap's locks probed,
// conftool read, the queue read from the store), the hosts in order with
// the commands per host, the registry checks with each instance's health
// now, and the time estimate. The store is opened read-only (or not at all
// when it does not exist yet); the deploy block, conftool, the restarts
// and the write-then-read probe are only described.
func runDryRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dry-run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/poolbot/config.yaml", "configuration file")
	fs.Usage = func() { fmt.Fprint(stderr, dryRunUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	r, err := dryRunRequest(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "dry-run: %v\n%s", err, dryRunUsage)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	x, err := dryRun(ctx, cfg, r, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dry-run:", err)
		return 1
	}
	if why := notReady(x); len(why) > 0 {
		fmt.Fprintf(stderr, "dry-run: it would not start now: %s\n", strings.Join(why, "; "))
		return exitWouldWait
	}
	return 0
}

// notReady lists why the request would not start now and run cleanly: the
// gates that are closed and the registry instances unhealthy now (a
// restart would stop at that host). Empty means it would start now.
func notReady(x procedure.Explanation) []string {
	var why []string
	for _, g := range x.Gates {
		if !g.Open {
			why = append(why, g.Gate+" gate closed")
		}
	}
	for _, h := range x.Hosts {
		for _, inst := range h.Instances {
			if inst.Health != nil {
				why = append(why, fmt.Sprintf("registry %s on %s unhealthy", inst.Name, h.Host))
			}
		}
	}
	return why
}

func dryRunRequest(args []string) (poolbot.Request, error) {
	if len(args) < 2 {
		return poolbot.Request{}, errors.New("an action and a service are required")
	}
	r := poolbot.Request{Action: poolbot.Action(args[0]), Service: args[1], Operator: "dry-run",
		Reason: "dry run", Origin: poolbot.Origin{Network: "cli"}}
	switch r.Action {
	case poolbot.ActionDepool, poolbot.ActionPool:
		if len(args) != 3 {
			return r, fmt.Errorf("%s needs <service> <dc>", r.Action)
		}
		r.Datacenter = args[2]
	case poolbot.ActionRestart:
		if len(args) != 2 {
			return r, errors.New("restart takes only <service>")
		}
	default:
		return r, fmt.Errorf("unknown action %q: depool, pool or restart", args[0])
	}
	return r, nil
}

func dryRun(ctx context.Context, cfg *config.Config, r poolbot.Request, stdout, stderr io.Writer) (procedure.Explanation, error) {
	// Warnings only: the output is the plan.
	logCfg := cfg.Log
	if logCfg.Level == "debug" || logCfg.Level == "info" {
		logCfg.Level = "warn"
	}
	log := newLogger(logCfg, stderr, configSecrets(cfg)...)
	clock := clockwork.NewRealClock()

	st, note, cleanup, err := openStoreForReading(ctx, cfg.Store.Path, clock)
	if err != nil {
		return procedure.Explanation{}, err
	}
	defer cleanup()

	proc, err := buildProcedure(ctx, cfg, st, clock, log, nil, nil)
	if err != nil {
		return procedure.Explanation{}, err
	}
	if proc.calendar != nil {
		if err := proc.calendar.Refresh(ctx); err != nil {
			fmt.Fprintf(stderr, "dry-run: deployment calendar: %v\n", err)
		}
	}
	x, err := proc.engine.Explain(ctx, r)
	if err != nil {
		return x, err
	}
	for _, l := range x.Lines() {
		fmt.Fprintln(stdout, l)
	}
	if note != "" {
		fmt.Fprintln(stdout, note)
	}
	return x, nil
}

// openStoreForReading opens the configured store read-only, or, when it
// does not exist yet, an empty throwaway one (there is no queue and no
// history to read).
func openStoreForReading(ctx context.Context, path string, clock clockwork.Clock) (*store.Store, string, func(), error) {
	st, err := store.OpenReadOnly(ctx, path, clock)
	if err == nil {
		return st, "", func() { st.Close() }, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil, err
	}
	dir, err := os.MkdirTemp("", "poolbot-dry-run-")
	if err != nil {
		return nil, "", nil, err
	}
	st, err = store.Open(ctx, filepath.Join(dir, "empty.db"), clock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	note := fmt.Sprintf("note: %s does not exist yet, so no queue and no restart history were read (the estimate uses procedure.per_host_estimate)", path)
	return st, note, func() { st.Close(); os.RemoveAll(dir) }, nil
}
