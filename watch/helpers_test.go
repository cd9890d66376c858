package watch

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/store"
)

func openStore(t *testing.T, clock clockwork.Clock) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "poolbot.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// listRequests lists every request of service, oldest first.
func listRequests(t *testing.T, st *store.Store, service string) []poolbot.Request {
	t.Helper()
	rs, err := st.List(context.Background(), store.Filter{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// insertRequest stores a request as the command layer or the procedure
// left it.
func insertRequest(t *testing.T, st *store.Store, r poolbot.Request) poolbot.Request {
	t.Helper()
	err := st.Tx(context.Background(), func(tx *store.Tx) error {
		var err error
		state := r.State
		r.State = poolbot.StateQueued
		if r, err = tx.InsertRequest(r); err != nil {
			return err
		}
		if state != "" && state != poolbot.StateQueued {
			r.State = state
			r, err = tx.UpdateRequest(r, poolbot.StateQueued)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// unsentSAL returns every SAL line in the outbox, oldest first.
func unsentSAL(t *testing.T, st *store.Store) []string {
	t.Helper()
	var out []string
	ctx := context.Background()
	for {
		l, ok, err := st.NextSAL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, l.Line)
		if err := st.MarkSALSent(ctx, l.ID); err != nil {
			t.Fatal(err)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
