package procedure

import (
	"context"

	"poolbot"
	"poolbot/store"
)

// Recording: every state change of the worker is stored with its audit
// event and the SAL lines that report it, in one transaction.

// transition moves r from state from to state to in one transaction with
// its audit event; mutate may change other fields.
func (e *Engine) transition(ctx context.Context, r poolbot.Request, from, to poolbot.State,
	mutate func(*poolbot.Request), kind, detail string) error {
	return e.transitionSAL(ctx, r, from, to, mutate, kind, detail)
}

// transitionSAL is transition plus SAL lines in the same transaction.
func (e *Engine) transitionSAL(ctx context.Context, r poolbot.Request, from, to poolbot.State,
	mutate func(*poolbot.Request), kind, detail string, lines ...poolbot.Notice) error {
	_, err := e.transitionSALFollowed(ctx, r, from, to, mutate, kind, detail, lines...)
	return err
}

// transitionSALFollowed is transitionSAL that also returns the outbox id
// of the request's last SAL line as of the transition, for the notice
// that must follow it (Notice.FollowsSAL); 0 when none is undelivered.
func (e *Engine) transitionSALFollowed(ctx context.Context, r poolbot.Request, from, to poolbot.State,
	mutate func(*poolbot.Request), kind, detail string, lines ...poolbot.Notice) (last int64, err error) {
	err = e.deps.Store.Tx(ctx, func(tx *store.Tx) error {
		cur, err := tx.Request(r.ID)
		if err != nil {
			return err
		}
		cur.State = to
		if mutate != nil {
			mutate(&cur)
		}
		if _, err := tx.UpdateRequest(cur, from); err != nil {
			return err
		}
		if err := tx.AddEvent(poolbot.Event{RequestID: r.ID, Actor: poolbot.ActorPoolbot, Kind: kind,
			FromState: from, ToState: to, Detail: detail}); err != nil {
			return err
		}
		for _, l := range lines {
			if err := e.queueSAL(tx, cur, l); err != nil {
				return err
			}
		}
		last, _, err = tx.LastUnsentSAL(r.ID)
		return err
	})
	if err == nil && len(lines) > 0 {
		e.deps.SALWritten()
	}
	return last, err
}

// queueSAL adds the SAL line n describes about r, attributed to r's
// operator; nothing goes to SAL in dry-run mode.
func (e *Engine) queueSAL(tx *store.Tx, r poolbot.Request, n poolbot.Notice) error {
	n.Request, n.Operator = r.ID, r.Operator
	return e.changes.SAL(tx, n)
}
