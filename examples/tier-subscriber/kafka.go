package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	Records    int // tiers.v1 records read by the bootstrap
	Tombstones int // of them, tombstones
	Invalid    int // records skipped, bootstrap and after
	Changes    int // tier changes and erasures handled after the bootstrap
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
func Run(
	ctx context.Context, cfg Config, subscriber *Subscriber, out *Output,
) (string, Counts, error) {
	tiersTopic, changedTopic := cfg.Prefix+TiersTopic, cfg.Prefix+TierChangedTopic
	starts, ends, err := listOffsets(ctx, cfg.Brokers, tiersTopic, changedTopic)
	if err != nil {
		return stopped(ctx, "", Counts{}, err)
	}
	// No consumer group: the state lives in memory and is rebuilt from the compacted topic
	// at every start, so there is nothing to commit, and every instance needs every member.
	client, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("huitou-tier-subscriber"),
		kgo.FetchMaxWait(fetchWait),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			tiersTopic: fromStart(ends[tiersTopic]),
		}),
	)
	if err != nil {
		return "", Counts{}, err
	}
	defer client.Close()

	s := &session{client: client, subscriber: subscriber, out: out, cfg: cfg}
	later, err := s.bootstrap(ctx, starts[tiersTopic], ends[tiersTopic])
	if err != nil {
		return stopped(ctx, "", s.counts, err)
	}
	// Changes from the end offsets taken before the bootstrap: none made during it is missed.
	client.AddConsumePartitions(map[string]map[int32]kgo.Offset{
		changedTopic: at(ends[changedTopic]),
	})
	reason, err := s.follow(ctx, later)
	return stopped(ctx, reason, s.counts, err)
}

// stopped makes the end of ctx (a signal, the timeout) a clean stop, whatever it broke.
func stopped(ctx context.Context, reason string, counts Counts, err error) (string, Counts, error) {
	switch {
	case err == nil:
		return reason, counts, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return stoppedByTimeout, counts, nil
	case ctx.Err() != nil:
		return stoppedBySignal, counts, nil
	}
	return "", counts, err
}

// session is one run's reading of the two topics.
type session struct {
	client     *kgo.Client
	subscriber *Subscriber
	out        *Output
	cfg        Config
	counts     Counts
}

// bootstrap reads tiers.v1 up to the high watermarks taken at the start, and reports the
// state. Records past them (written meanwhile) are returned, to be handled as updates.
func (s *session) bootstrap(ctx context.Context, starts, ends map[int32]int64) ([]Record, error) {
	began := time.Now()
	pending := map[int32]bool{}
	for partition, end := range ends {
		if end > starts[partition] {
			pending[partition] = true
		}
	}
	var later []Record
	for len(pending) > 0 {
		fetches, err := s.poll(ctx)
		if err != nil {
			return nil, err
		}
		fetches.EachRecord(func(r *kgo.Record) {
			record := s.record(r)
			if r.Offset >= ends[r.Partition] {
				later = append(later, record)
				return
			}
			// The log cleaner never touches the active segment, so the record just before
			// the high watermark is always there to be read: reaching it ends the partition.
			if r.Offset >= ends[r.Partition]-1 {
				delete(pending, r.Partition)
			}
			s.counts.Records++
			result := s.subscriber.Handle(record)
			switch result.Kind {
			case InvalidRecord:
				s.counts.Invalid++
				s.out.Line(result.Line)
			case TombstoneRecord:
				s.counts.Tombstones++
			}
		})
	}
	tiers := s.subscriber.Tiers
	if s.cfg.Members {
		for _, id := range tiers.CustomerIDs() {
			member, _ := tiers.Get(id)
			s.out.Line(map[string]any{
				"event": "member", "customer_id": id, "tier": member.Tier, "since": member.SinceText,
			})
		}
	}
	s.out.Line(map[string]any{
		"event": "bootstrapped", "members": tiers.Len(), "by_tier": tiers.ByTier(),
		"records": s.counts.Records, "tombstones": s.counts.Tombstones,
		"invalid": s.counts.Invalid, "elapsed_ms": time.Since(began).Milliseconds(),
	})
	return later, s.out.Err()
}

// follow applies every record after the bootstrap until ctx ends or MaxChanges is reached.
func (s *session) follow(ctx context.Context, later []Record) (string, error) {
	for _, record := range later {
		if s.apply(record) {
			return stoppedAtMaxChanges, nil
		}
	}
	for {
		fetches, err := s.poll(ctx)
		if err != nil {
			return "", err
		}
		done := false
		fetches.EachRecord(func(r *kgo.Record) {
			if !done {
				done = s.apply(s.record(r))
			}
		})
		if done {
			return stoppedAtMaxChanges, nil
		}
	}
}

// apply handles one record after the bootstrap and reports it; true once MaxChanges is
// reached.
func (s *session) apply(r Record) bool {
	result := s.subscriber.Handle(r)
	switch result.Kind {
	case InvalidRecord:
		s.counts.Invalid++
	case TombstoneRecord, ChangeRecord:
		s.counts.Changes++
	case SnapshotRecord:
		// Loyalty writes a snapshot beside every tier change: usually nothing new by then.
		if result.Outcome == Unchanged {
			return false
		}
	}
	s.out.Line(result.Line)
	return s.cfg.MaxChanges > 0 && s.counts.Changes >= s.cfg.MaxChanges
}

// poll waits for records; an error is the end of ctx, a fetch error the client does not
// retry itself, or output nobody reads any more.
func (s *session) poll(ctx context.Context) (kgo.Fetches, error) {
	if err := s.out.Err(); err != nil {
		return nil, err
	}
	fetches := s.client.PollFetches(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range fetches.Errors() {
		errs = append(errs, fmt.Errorf("fetching %s[%d]: %w", e.Topic, e.Partition, e.Err))
	}
	return fetches, errors.Join(errs...)
}

func (s *session) record(r *kgo.Record) Record {
	return Record{
		Topic:     strings.TrimPrefix(r.Topic, s.cfg.Prefix),
		Partition: r.Partition,
		Offset:    r.Offset,
		Key:       r.Key,
		Value:     r.Value,
	}
}

// listOffsets returns the start and end (high watermark) offsets of every partition.
func listOffsets(
	ctx context.Context, brokers []string, topics ...string,
) (starts, ends map[string]map[int32]int64, err error) {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...), kgo.ClientID("huitou-tier-subscriber-admin"),
	)
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
