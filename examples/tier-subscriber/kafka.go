package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is what the command line sets.
type Config struct {
	Brokers    []string
	Prefix     string
	SchemaDir  string
	Members    bool
	MaxChanges int
	Timeout    time.Duration
}

// Counts are the figures of the bootstrap and stop lines.
type Counts struct {
	Records    int `json:"records"`
	Tombstones int `json:"tombstones"`
	Invalid    int `json:"invalid"`
	Changes    int `json:"changes"`
}

// Stop reasons.
const (
	stoppedBySignal     = "signal"
	stoppedByTimeout    = "timeout"
	stoppedAtMaxChanges = "max_changes"
)

// fetchWait bounds how long the broker holds an empty fetch: partitions added after the
// bootstrap join the next fetch, so this is also how soon following starts.
const fetchWait = 300 * time.Millisecond

// Run bootstraps the tiers from loyalty.tiers.v1, then follows both topics until ctx ends
// or MaxChanges changes were handled; it returns why it stopped.
func Run(ctx context.Context, cfg Config, subscriber *Subscriber, out *Output) (string, Counts, error) {
	counts := Counts{}
	reason, err := subscribe(ctx, cfg, subscriber, &counts, out)
	if err == nil {
		err = out.Err()
	}
	if err != nil && ctx.Err() != nil {
		return stopReason(ctx), counts, nil
	}
	return reason, counts, err
}

func subscribe(ctx context.Context, cfg Config, subscriber *Subscriber, counts *Counts, out *Output) (string, error) {
	tiersTopic, changedTopic := cfg.Prefix+TiersTopic, cfg.Prefix+TierChangedTopic
	starts, ends, err := listOffsets(ctx, cfg.Brokers, tiersTopic, changedTopic)
	if err != nil {
		return "", err
	}
	// No consumer group: the state lives in memory and is rebuilt from the compacted topic at
	// every start, so there is nothing to commit, and every instance needs every member.
	client, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("huitou-tier-subscriber"),
		kgo.FetchMaxWait(fetchWait),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{tiersTopic: fromStart(ends[tiersTopic])}),
	)
	if err != nil {
		return "", err
	}
	defer client.Close()

	started := time.Now()
	later, err := bootstrap(ctx, client, subscriber, starts[tiersTopic], ends[tiersTopic], counts, out)
	if err != nil {
		return "", err
	}
	if cfg.Members {
		for _, id := range subscriber.Tiers.CustomerIDs() {
			member, _ := subscriber.Tiers.Get(id)
			out.Line(map[string]any{"event": "member", "customer_id": id, "tier": member.Tier, "since": member.SinceText})
		}
	}
	out.Line(map[string]any{
		"event": "bootstrapped", "members": subscriber.Tiers.Len(), "by_tier": subscriber.Tiers.ByTier(),
		"records": counts.Records, "tombstones": counts.Tombstones, "invalid": counts.Invalid,
		"elapsed_ms": time.Since(started).Milliseconds(),
	})

	// Changes from the end offsets taken before the bootstrap: none made during it is missed.
	client.AddConsumePartitions(map[string]map[int32]kgo.Offset{changedTopic: at(ends[changedTopic])})
	follower := follower{subscriber: subscriber, counts: counts, out: out, maxChanges: cfg.MaxChanges}
	for _, record := range later {
		if follower.handle(record) {
			return stoppedAtMaxChanges, nil
		}
	}
	for out.Err() == nil {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if err := fetchError(fetches); err != nil {
			return "", err
		}
		stop := false
		fetches.EachRecord(func(r *kgo.Record) {
			if !stop {
				stop = follower.handle(record(r, cfg.Prefix))
			}
		})
		if stop {
			return stoppedAtMaxChanges, nil
		}
	}
	return "", out.Err()
}

// bootstrap reads tiers.v1 up to the high watermarks taken at the start. Records past them
// (written meanwhile) are returned, to be handled as updates once the bootstrap is reported.
func bootstrap(ctx context.Context, client *kgo.Client, subscriber *Subscriber, starts, ends map[int32]int64, counts *Counts, out *Output) ([]Record, error) {
	pending := map[int32]bool{}
	for partition, end := range ends {
		if end > starts[partition] {
			pending[partition] = true
		}
	}
	var later []Record
	for len(pending) > 0 && out.Err() == nil {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := fetchError(fetches); err != nil {
			return nil, err
		}
		fetches.EachRecord(func(r *kgo.Record) {
			rec := record(r, subscriber.prefix)
			if r.Offset >= ends[r.Partition] {
				later = append(later, rec)
				return
			}
			// The log cleaner never touches the active segment, so the record just before the
			// high watermark is always there to be read: reaching it ends the partition.
			if r.Offset >= ends[r.Partition]-1 {
				delete(pending, r.Partition)
			}
			counts.Records++
			result := subscriber.Handle(rec)
			switch result.Kind {
			case InvalidRecord:
				counts.Invalid++
				out.Line(result.Line)
			case TombstoneRecord:
				counts.Tombstones++
			}
		})
	}
	return later, nil
}

type follower struct {
	subscriber *Subscriber
	counts     *Counts
	out        *Output
	maxChanges int
}

// handle applies one record after the bootstrap and reports it; true once MaxChanges is reached.
func (f *follower) handle(r Record) bool {
	result := f.subscriber.Handle(r)
	switch result.Kind {
	case InvalidRecord:
		f.counts.Invalid++
	case TombstoneRecord, ChangeRecord:
		f.counts.Changes++
	case SnapshotRecord:
		// Loyalty writes a snapshot beside every tier change: usually nothing new by then.
		if result.Outcome == Unchanged {
			return false
		}
	}
	f.out.Line(result.Line)
	return f.maxChanges > 0 && f.counts.Changes >= f.maxChanges
}

// listOffsets returns the start and end (high watermark) offsets of every partition.
func listOffsets(ctx context.Context, brokers []string, topics ...string) (starts, ends map[string]map[int32]int64, err error) {
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ClientID("huitou-tier-subscriber-admin"))
	if err != nil {
		return nil, nil, err
	}
	defer client.Close()
	admin := kadm.NewClient(client)
	listedStarts, err := admin.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("listing start offsets: %w", err)
	}
	listedEnds, err := admin.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("listing end offsets: %w", err)
	}
	if starts, err = offsets(listedStarts, topics); err != nil {
		return nil, nil, err
	}
	if ends, err = offsets(listedEnds, topics); err != nil {
		return nil, nil, err
	}
	return starts, ends, nil
}

func offsets(listed kadm.ListedOffsets, topics []string) (map[string]map[int32]int64, error) {
	byTopic := map[string]map[int32]int64{}
	for _, topic := range topics {
		partitions := listed[topic]
		if _, missing := partitions[-1]; missing || len(partitions) == 0 {
			return nil, fmt.Errorf("topic %s does not exist", topic)
		}
		byTopic[topic] = map[int32]int64{}
		for partition, offset := range partitions {
			if offset.Err != nil {
				return nil, fmt.Errorf("offsets of %s[%d]: %w", topic, partition, offset.Err)
			}
			byTopic[topic][partition] = offset.Offset
		}
	}
	return byTopic, nil
}

func fromStart(partitions map[int32]int64) map[int32]kgo.Offset {
	offsets := map[int32]kgo.Offset{}
	for partition := range partitions {
		offsets[partition] = kgo.NewOffset().AtStart()
	}
	return offsets
}

func at(partitions map[int32]int64) map[int32]kgo.Offset {
	offsets := map[int32]kgo.Offset{}
	for partition, offset := range partitions {
		offsets[partition] = kgo.NewOffset().At(offset)
	}
	return offsets
}

func record(r *kgo.Record, prefix string) Record {
	return Record{
		Topic: r.Topic[len(prefix):], Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value,
	}
}

func fetchError(fetches kgo.Fetches) error {
	var errs []error
	for _, e := range fetches.Errors() {
		errs = append(errs, fmt.Errorf("fetching %s[%d]: %w", e.Topic, e.Partition, e.Err))
	}
	return errors.Join(errs...)
}

// stopReason says why ctx ended: the timeout, or a signal.
func stopReason(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return stoppedByTimeout
	}
	return stoppedBySignal
}
