// Command tier-subscriber keeps the current loyalty tier of every member, as another
// system would: it bootstraps from the compacted loyalty.tiers.v1, then follows
// loyalty.tier-changed.v1 and tiers.v1, validating every message against the committed
// JSON Schemas. It writes JSON lines on stdout; see README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	flags := flag.NewFlagSet("tier-subscriber", flag.ContinueOnError)
	brokers := flags.String("brokers", envOr("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
		"Kafka bootstrap servers, comma-separated")
	prefix := flags.String("topic-prefix", os.Getenv("HUITOU_TOPIC_PREFIX"),
		"the deployment's prefix before the topic names")
	schemaDir := flags.String("schemas", "../../docs/schemas",
		"directory of <topic>/<n>.schema.json files (the highest n is used)")
	members := flags.Bool("members", false,
		"write a member line per member before the bootstrapped line")
	maxChanges := flags.Int("max-changes", 0,
		"stop after this many tier changes and erasures (0: never)")
	timeout := flags.Duration("timeout", 0, "stop after this long (0: never)")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %s\n", strings.Join(flags.Args(), " "))
		return 2
	}
	cfg := Config{
		Brokers: strings.Split(*brokers, ","), Prefix: *prefix, SchemaDir: *schemaDir,
		Members: *members, MaxChanges: *maxChanges, Timeout: *timeout,
	}
	out := NewOutput(os.Stdout)
	fatal := NewOutput(os.Stderr)

	schemas, err := LoadSchemas(cfg.SchemaDir, Topics)
	if err != nil {
		fatal.Line(map[string]any{"event": "fatal", "error": err.Error()})
		return 1
	}
	revisions := map[string]any{}
	for topic, schema := range schemas {
		revisions[topic] = map[string]any{"revision": schema.Revision, "path": schema.Path}
	}
	out.Line(map[string]any{"event": "started", "schemas": revisions, "topic_prefix": cfg.Prefix})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	subscriber := NewSubscriber(schemas, cfg.Prefix)
	reason, counts, err := Run(ctx, cfg, subscriber, out)
	if err != nil {
		fatal.Line(map[string]any{"event": "fatal", "error": err.Error()})
		return 1
	}
	out.Line(map[string]any{
		"event": "stopped", "reason": reason, "changes": counts.Changes, "invalid": counts.Invalid,
		"members": subscriber.Tiers.Len(), "by_tier": subscriber.Tiers.ByTier(),
	})
	if out.Err() != nil {
		return 1
	}
	return 0
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
