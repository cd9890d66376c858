package dns

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"poolbot/integrations/restart"
)

// ExecutorRunner runs the host check through one of poolbot's restart
// executors (ssh, cumin, local), so the host is asked the same way its
// restart is run.
type ExecutorRunner struct {
	Executor restart.Executor
}

// Run runs argv on host. A command that ran and exited non-zero is an
// error with its exit status and output tail. The ssh and local
// executors return the command's output as is (stdout and stderr
// together; getent writes nothing to stderr when it succeeds); cumin's is
// taken from its "----- OUTPUT of ... -----" block.
func (r ExecutorRunner) Run(ctx context.Context, host string, argv []string) ([]byte, error) {
	res, err := r.Executor.Run(ctx, host, argv)
	if err != nil {
		return nil, err
	}
	if !res.OK() {
		return nil, errors.New(res.Summary(200))
	}
	if _, ok := r.Executor.(*restart.Cumin); ok {
		return cuminOutput(res.Output)
	}
	return res.Output, nil
}

// cuminOutput returns the command output cumin printed for a one-host
// run: the lines after "----- OUTPUT of '<cmd>' -----" up to the next
// "=====" line. No such block means the command printed nothing.
func cuminOutput(out []byte) ([]byte, error) {
	var block []byte
	in, found := false, false
	for _, line := range bytes.SplitAfter(out, []byte("\n")) {
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.HasPrefix(trimmed, []byte("----- OUTPUT of ")):
			if found {
				return nil, fmt.Errorf("cumin printed more than one output block")
			}
			in, found = true, true
		case in && bytes.HasPrefix(trimmed, []byte("=====")):
			in = false
		case in:
			block = append(block, line...)
		}
	}
	return block, nil
}
