package restart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fakeScenario drives the fake cumin; the test writes it as scenario.json
// next to the "cumin" symlink.
type fakeScenario struct {
	// Queries maps a host query to the folded node set it selects.
	Queries map[string]string `json:"queries"`
	// Unreachable hosts fail as ssh does when it cannot connect (rc 255).
	Unreachable []string `json:"unreachable"`
	// Crash makes cumin die with an exception (exit 99) after selecting
	// hosts, as cumin's main() reports any unexpected exception.
	Crash string `json:"crash"`
	// Color wraps report lines in colorama escape sequences, as cumin does
	// on a terminal.
	Color bool `json:"color"`
}

// fakeCumin imitates cumin's CLI (v6 option set) closely enough for the
// executor: it parses the options, resolves D{host,...} or the scenario's
// queries, and prints what cumin prints, on the streams cumin uses (the
// host selection and report lines on stderr, command output on stdout).
// Instead of ClusterShell over SSH it runs the command string with
// /bin/sh -c, which is what the remote sshd does with it, so quoting is
// exercised by a real shell. Each call appends its argv to calls.jsonl.
func fakeCumin(args []string) int {
	dir := filepath.Dir(os.Args[0])
	if f, err := os.OpenFile(filepath.Join(dir, "calls.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		line, _ := json.Marshal(args)
		f.Write(append(line, '\n'))
		f.Close()
	}
	var sc fakeScenario
	if b, err := os.ReadFile(filepath.Join(dir, "scenario.json")); err == nil {
		if err := json.Unmarshal(b, &sc); err != nil {
			fmt.Fprintf(os.Stderr, "fake cumin: scenario: %v\n", err)
			return 97
		}
	}
	color := func(code, s string) string {
		if !sc.Color {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[39m"
	}
	stderr := func(s string) { fmt.Fprintln(os.Stderr, color("33", s)) }
	usage := func(msg string) int {
		fmt.Fprintln(os.Stderr, "usage: cumin [-h] [-c CONFIG] [--global-timeout GLOBAL_TIMEOUT] [-t TIMEOUT] [-m {sync,async}] [-p PCT] [-b BATCH_SIZE] [-s BATCH_SLEEP] [-x] [-o {txt,json}] [-i] [--force] [--dry-run] [--no-progress] HOSTS_QUERY [COMMAND ...]")
		fmt.Fprintln(os.Stderr, "cumin: error: "+msg)
		return 2
	}

	var (
		timeout              int
		batch                = 0
		force, dryRun, noBar bool
		positional           []string
	)
	valued := map[string]bool{"-c": true, "--config": true, "--global-timeout": true, "-m": true, "--mode": true,
		"-p": true, "--success-percentage": true, "-s": true, "--batch-sleep": true, "-o": true, "--output": true,
		"--backend": true, "--transport": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case len(positional) > 0 || !strings.HasPrefix(a, "-"):
			positional = append(positional, a)
		case a == "-t" || a == "--timeout" || a == "-b" || a == "--batch-size":
			if i+1 == len(args) {
				return usage("argument " + a + ": expected one argument")
			}
			i++
			n, err := strconv.Atoi(args[i])
			if err != nil || n <= 0 {
				return usage(fmt.Sprintf("argument %s: invalid value: '%s'", a, args[i]))
			}
			if a == "-t" || a == "--timeout" {
				timeout = n
			} else {
				batch = n
			}
		case valued[a]:
			if i+1 == len(args) {
				return usage("argument " + a + ": expected one argument")
			}
			i++
		case a == "--force":
			force = true
		case a == "--dry-run":
			dryRun = true
		case a == "--no-progress":
			noBar = true
		case a == "-x", a == "-d", a == "--trace", a == "-i":
		default:
			return usage("unrecognized arguments: " + a)
		}
	}
	if len(positional) == 0 {
		return usage("the following arguments are required: HOSTS_QUERY")
	}
	query, commands := positional[0], positional[1:]
	if len(commands) == 0 {
		dryRun = true
	}
	if len(commands) > 1 {
		return usage("-m/--mode is required when there are multiple COMMANDS")
	}
	_ = batch

	var hosts []string
	if strings.HasPrefix(query, "D{") && strings.HasSuffix(query, "}") {
		var err error
		hosts, err = ExpandNodeset(query[2 : len(query)-1])
		if err != nil {
			stderr(fmt.Sprintf("Caught InvalidQueryError exception: %v", err))
			return 99
		}
	} else if ns, ok := sc.Queries[query]; ok {
		if ns != "" {
			hosts, _ = ExpandNodeset(ns)
		}
	} else {
		stderr(fmt.Sprintf("Caught InvalidQueryError exception: unable to parse the query '%s'", query))
		return 99
	}
	if len(hosts) == 0 {
		stderr("No hosts found that matches the query")
		return 0
	}
	stderr(fmt.Sprintf("%d hosts will be targeted:", len(hosts)))
	stderr(color("36", foldForFake(hosts)))
	if dryRun {
		stderr("DRY-RUN mode enabled, aborting")
		return 0
	}
	if !force {
		stderr("Not in a TTY but neither DRY-RUN nor FORCE mode were specified.")
		stderr("Caught CuminError exception: Not in a TTY but neither DRY-RUN nor FORCE mode were specified.")
		return 99
	}
	stderr("FORCE mode enabled, continuing without confirmation")
	if sc.Crash != "" {
		stderr("Caught Exception exception: " + sc.Crash)
		return 99
	}

	// SIGINT: cumin's handler raises KeyboardInterruptError, main() prints
	// this and returns 98.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	command := commands[0]
	short := shortCommand(command)
	if !noBar {
		fmt.Fprint(os.Stderr, "\rPASS |          |   0% (0/1) [00:00<?, ?hosts/s]\rFAIL |          |   0% (0/1) [00:00<?, ?hosts/s]\n")
	}
	failed, timedOut, succeeded := []string{}, []string{}, 0
	for _, h := range hosts {
		if len(failed)+len(timedOut) > 0 {
			break // -p 100: the first failure stops scheduling
		}
		fmt.Fprintln(os.Stdout, color("34", fmt.Sprintf("----- OUTPUT of '%s' -----", short)))
		rc, to := 0, false
		if contains(sc.Unreachable, h) {
			fmt.Fprintf(os.Stdout, "ssh: connect to host %s port 22: Connection refused\n", h)
			rc = 255
		} else {
			cctx := ctx
			var cancel context.CancelFunc = func() {}
			if timeout > 0 {
				cctx, cancel = context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
			}
			cmd := exec.CommandContext(cctx, "/bin/sh", "-c", command)
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
			// Kill the whole command tree on timeout, as ClusterShell does by
			// closing the ssh connection.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			err := cmd.Run()
			timedOut := cctx.Err() != nil
			cancel()
			var ee *exec.ExitError
			switch {
			case ctx.Err() != nil:
				stderr("Execution interrupted by Ctrl+c/SIGINT/Aborted")
				return 98
			case timedOut:
				to = true
			case errors.As(err, &ee):
				rc = ee.ExitCode()
			case err != nil:
				rc = 127
			}
		}
		switch {
		case to:
			timedOut = append(timedOut, h)
		case rc != 0:
			failed = append(failed, h)
		default:
			succeeded++
		}
	}
	fmt.Fprintln(os.Stdout, color("34", "================"))
	if !noBar {
		fmt.Fprint(os.Stderr, "\rPASS |##########| 100% (1/1) [00:00<00:00, 3.10hosts/s]\n")
	}
	total := len(hosts)
	pct := func(n int) string { return fmt.Sprintf("%.1f%% (%d/%d)", 100*float64(n)/float64(total), n, total) }
	if len(failed) > 0 {
		stderr(color("31", fmt.Sprintf("%s of nodes failed to execute command '%s': %s", pct(len(failed)), short, foldForFake(failed))))
	}
	if len(timedOut) > 0 {
		stderr(color("31", fmt.Sprintf("%s of nodes timeout to execute command '%s': %s", pct(len(timedOut)), short, foldForFake(timedOut))))
	}
	if succeeded < total {
		stderr(color("31", fmt.Sprintf("%s success ratio (< 100.0%% threshold) for command: '%s'. Aborting.", pct(succeeded), short)))
		stderr(color("31", fmt.Sprintf("%s success ratio (< 100.0%% threshold) of nodes successfully executed all commands. Aborting.", pct(succeeded))))
		return 2
	}
	stderr(color("32", fmt.Sprintf("%s success ratio (>= 100.0%% threshold) for command: '%s'.", pct(succeeded), short)))
	stderr(color("32", fmt.Sprintf("%s success ratio (>= 100.0%% threshold) of nodes successfully executed all commands.", pct(succeeded))))
	return 0
}

// shortCommand is cumin's BaseEventHandler._get_short_command: commands
// longer than 35 characters keep 16 at each end around "...".
func shortCommand(c string) string {
	const max, sub = 35, (35 - 3) / 2
	if len(c) <= max {
		return c
	}
	return c[:sub] + "..." + c[len(c)-sub:]
}

// foldForFake writes hosts as a comma-separated node set. ClusterShell
// folds numeric runs; the fake folds the common "<name><digits>.<domain>"
// shape so that ListHosts sees bracket ranges as in production.
func foldForFake(hosts []string) string {
	type key struct{ prefix, suffix string }
	var order []key
	groups := map[key][]string{}
	for _, h := range hosts {
		i := strings.IndexByte(h, '.')
		if i < 0 {
			i = len(h)
		}
		j := i
		for j > 0 && h[j-1] >= '0' && h[j-1] <= '9' {
			j--
		}
		k := key{h[:j], h[i:]}
		if j == i {
			k = key{h, ""}
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		if j < i {
			groups[k] = append(groups[k], h[j:i])
		} else {
			groups[k] = append(groups[k], "")
		}
	}
	var parts []string
	for _, k := range order {
		nums := groups[k]
		if len(nums) == 1 && nums[0] == "" {
			parts = append(parts, k.prefix+k.suffix)
			continue
		}
		if len(nums) == 1 {
			parts = append(parts, k.prefix+nums[0]+k.suffix)
			continue
		}
		// Fold consecutive numbers of equal width into a-b runs.
		var runs []string
		for i := 0; i < len(nums); {
			j := i
			for j+1 < len(nums) && len(nums[j+1]) == len(nums[i]) && atoi(nums[j+1]) == atoi(nums[j])+1 {
				j++
			}
			if j == i {
				runs = append(runs, nums[i])
			} else {
				runs = append(runs, nums[i]+"-"+nums[j])
			}
			i = j + 1
		}
		parts = append(parts, k.prefix+"["+strings.Join(runs, ",")+"]"+k.suffix)
	}
	return strings.Join(parts, ",")
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
