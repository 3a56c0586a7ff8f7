package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/app"
	"github.com/medic-dev/medic/internal/sqlite"
	"github.com/medic-dev/medic/internal/ui/scorecard"
)

func scorecardCmd() *cobra.Command {
	var asJSON, offline, fleetWide bool
	var require string
	c := &cobra.Command{
		Use:     "scorecard",
		Aliases: []string{"check"},
		Short:   "Answer the resilience questions from the running config and the recorded drills",
		Long: `Answer the questions every production service should answer "yes" to — can an
instance die without user impact, can the database fail over, do readiness
checks verify serving, is every call bounded, can it restart without downtime,
can a bad change be rolled back in under 60 s, are RTO and RPO declared and
met, was failover tested under load in the last 90 days — each with its
evidence and, when the answer is not yes, what to change.

By default the running agent answers (GET /v1/scorecard). --offline answers
from the config file (-c) and the drills recorded in its data directory,
without an agent (whether a rollback target is kept is then unknown).

Exit status 1 when an item marked required answers "no", so CI can gate on
it. The required items are ` + strings.Join(scorecard.DefaultRequired, ", ") + ` unless
--require names others ("all", "none", or ids separated by commas).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var card scorecard.Card
			var err error
			if fleetWide {
				cl, err := newClient(cmd)
				if err != nil {
					return err
				}
				all, err := fleetCard(cmd.OutOrStdout(), cl, asJSON)
				if err != nil {
					return err
				}
				if !all {
					return errReported
				}
				return nil
			}
			if offline {
				card, err = offlineCard(cmd)
			} else {
				card, err = agentCard(cmd)
			}
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("require") {
				if card, err = card.Require(requireIDs(require)); err != nil {
					return usageError{err}
				}
			}
			if err := writeCard(cmd.OutOrStdout(), card, asJSON); err != nil {
				return err
			}
			if !card.Passed {
				return errReported
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the scorecard as one JSON document")
	c.Flags().BoolVar(&fleetWide, "fleet", false, "the fleet's answers: yes only when every host that is not lost answers yes (exit 1 otherwise)")
	c.Flags().BoolVar(&offline, "offline", false, "answer from the config file and its data directory, without an agent")
	c.Flags().StringVar(&require, "require", "", `items that fail the command when they answer "no": ids separated by commas, "all" or "none"`)
	return c
}

func requireIDs(s string) []string {
	switch s = strings.TrimSpace(s); s {
	case "all":
		return scorecard.IDs
	case "none", "":
		return []string{}
	}
	var ids []string
	for _, id := range strings.Split(s, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

func agentCard(cmd *cobra.Command) (scorecard.Card, error) {
	cl, err := newClient(cmd)
	if err != nil {
		return scorecard.Card{}, err
	}
	var card scorecard.Card
	err = cl.getJSON("GET", "/v1/scorecard", 30*time.Second, &card)
	return card, err
}

// offlineCard answers from the config file and the drills its data directory
// recorded; the store is opened only when it exists.
func offlineCard(cmd *cobra.Command) (scorecard.Card, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return scorecard.Card{}, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	var db *sqlite.DB
	if _, err := os.Stat(filepath.Join(cfg.DataDir, sqlite.FileName)); err == nil {
		if db, err = sqlite.Open(cfg.DataDir); err != nil {
			return scorecard.Card{}, fmt.Errorf("open the drill records in %s: %w", cfg.DataDir, err)
		}
		defer db.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return scorecard.Card{}, fmt.Errorf("look for the store in %s: %w", cfg.DataDir, err)
	}
	in, err := app.ScorecardInput(ctx, cfg, db, nil)
	if err != nil {
		return scorecard.Card{}, err
	}
	return scorecard.Evaluate(in, time.Now()), nil
}

func writeCard(w io.Writer, card scorecard.Card, asJSON bool) error {
	if !asJSON {
		return card.WriteText(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(card)
}
