// Command poolbot is the chat-ops bot that pools and depools a discovery
// service in a datacenter and restarts the registry instances that depend
// on it, one host at a time, when no deployment is running or scheduled.
//
//	poolbot run -config /etc/poolbot/config.yaml
//	poolbot console -config config.yaml -as alice
//	poolbot check-config -config config.yaml
//	poolbot dry-run -config config.yaml depool apus codfw
//	poolbot version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	_ "time/tzdata" // calendar time zones even without /usr/share/zoneinfo

	"poolbot/config"
)

// version is set at build time with -ldflags "-X main.version=…"; without
// it the module version from the build info is used.
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: poolbot <command> [flags]

commands:
  run -config FILE                 run the bot on the chat networks in FILE
  console -config FILE -as NAME    run the bot with a local console as operator NAME
  check-config -config FILE        print every problem in FILE, exit 1 if any (or: check-config FILE)
  dry-run -config FILE <depool|pool|restart> <service> [<dc>]
                                   print the plan and the gates now; changes nothing;
                                   exit 0 it would start now, 3 it would wait or a registry is unhealthy
  version                          print the version
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "run", "console":
		fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
		fs.SetOutput(stderr)
		cfgPath := fs.String("config", "/etc/poolbot/config.yaml", "configuration file")
		// -as exists only for the console: run -h does not list it.
		var as *string
		if args[0] == "console" {
			as = fs.String("as", "", "the operator you are (one of the operators in the config)")
		} else {
			as = new(string)
		}
		fs.Usage = func() {
			fmt.Fprintf(stderr, "usage: poolbot %s -config FILE", args[0])
			if args[0] == "console" {
				fmt.Fprint(stderr, " -as NAME")
			}
			fmt.Fprintln(stderr)
			fs.PrintDefaults()
		}
		if err := fs.Parse(args[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "%s: unexpected argument %q\n", args[0], fs.Arg(0))
			fs.Usage()
			return 2
		}
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		opts := daemonOptions{console: args[0] == "console", operator: *as, stdin: stdin, stdout: stdout, stderr: stderr}
		if opts.console && *as == "" {
			fmt.Fprintln(stderr, "console: -as NAME is required (one of the operators in the config)")
			return 2
		}
		if err := runDaemon(ctx, cfg, opts); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "poolbot:", err)
			return 1
		}
		return 0
	case "check-config":
		return checkConfig(args[1:], stdout, stderr)
	case "dry-run":
		return runDryRun(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "poolbot", buildVersion())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
	return 2
}

const checkConfigUsage = "usage: poolbot check-config -config FILE\n" +
	"       poolbot check-config FILE\n" +
	"prints every problem in FILE, one a line with its key and line; exit 0 when there is none, 1 otherwise\n"

// checkConfig loads the config named by -config, or by the one positional
// argument (the older form), and prints every problem in it.
func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file")
	fs.Usage = func() { fmt.Fprint(stderr, checkConfigUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	path := *cfgPath
	switch {
	case path != "" && fs.NArg() == 0:
	case path == "" && fs.NArg() == 1:
		path = fs.Arg(0)
	default:
		fs.Usage()
		return 2
	}
	if _, err := config.Load(path); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n", path)
	return 0
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		return v
	}
	return "unknown"
}
