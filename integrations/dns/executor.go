package dns

import (
	"context"
	"errors"

	"poolbot/integrations/restart"
)

// ExecutorRunner runs the host check through one of poolbot's restart
// executors (ssh, cumin, local), so the host is asked the same way its
// restart is run.
type ExecutorRunner struct {
	Executor restart.Executor
}

// Run runs argv on host. A command that ran and exited non-zero is an
// error with its exit status and output tail. Every executor's
// Result.Output is what the command printed (stdout and stderr together;
// getent writes nothing to stderr when it succeeds): the cumin executor
// takes it out of cumin's "----- OUTPUT of ... -----" block itself.
func (r ExecutorRunner) Run(ctx context.Context, host string, argv []string) ([]byte, error) {
	res, err := r.Executor.Run(ctx, host, argv)
	if err != nil {
		return nil, err
	}
	if !res.OK() {
		return nil, errors.New(res.Summary(200))
	}
	return res.Output, nil
}
