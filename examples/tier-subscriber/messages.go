package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// The contract's names of the two topics; a deployment may put a prefix before them.
const (
	TiersTopic       = "loyalty.tiers.v1"
	TierChangedTopic = "loyalty.tier-changed.v1"
)

// Topics are the topics the subscriber reads, each validated against its own schema.
var Topics = []string{TiersTopic, TierChangedTopic}

// Record is one Kafka record as the subscriber sees it.
type Record struct {
	Topic     string // the contract's name, without the deployment's prefix
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte // nil for a tombstone
}

// The fields the subscriber uses; the schema has checked the rest.
type tierSnapshot struct {
	EventID    string `json:"event_id"`
	CustomerID string `json:"customer_id"`
	Tier       string `json:"tier"`
	Since      string `json:"since"`
}

type tierChanged struct {
	EventID    string  `json:"event_id"`
	OccurredAt string  `json:"occurred_at"`
	CustomerID string  `json:"customer_id"`
	OldTier    *string `json:"old_tier"`
	NewTier    string  `json:"new_tier"`
	Direction  string  `json:"direction"`
	Reason     string  `json:"reason"`
}

// Where is where a record came from, in every line about it.
type Where struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// SnapshotLine reports a tiers.v1 snapshot (after the bootstrap).
type SnapshotLine struct {
	Event        string  `json:"event"` // "snapshot"
	Outcome      string  `json:"outcome"`
	CustomerID   string  `json:"customer_id"`
	Tier         string  `json:"tier"`
	Since        string  `json:"since"`
	PreviousTier *string `json:"previous_tier"`
	EventID      string  `json:"event_id"`
	Where
}

// ChangeLine reports a tier-changed.v1 event.
type ChangeLine struct {
	Event      string  `json:"event"` // "tier_changed"
	Outcome    string  `json:"outcome"`
	CustomerID string  `json:"customer_id"`
	OldTier    *string `json:"old_tier"`
	NewTier    string  `json:"new_tier"`
	Direction  string  `json:"direction"`
	Reason     string  `json:"reason"`
	OccurredAt string  `json:"occurred_at"`
	// PreviousTier is the tier the subscriber held before (null: an unknown member); it
	// differs from OldTier when the subscriber missed a change.
	PreviousTier *string `json:"previous_tier"`
	EventID      string  `json:"event_id"`
	Where
}

// ErasedLine reports a tombstone on tiers.v1 (after the bootstrap).
type ErasedLine struct {
	Event        string  `json:"event"` // "erased"
	CustomerID   string  `json:"customer_id"`
	PreviousTier *string `json:"previous_tier"`
	Where
}

// InvalidLine reports a record that was skipped, and why (never its value).
type InvalidLine struct {
	Event  string  `json:"event"` // "invalid"
	Key    *string `json:"key"`
	Reason string  `json:"reason"`
	Where
}

// Kind is what a record turned out to be.
type Kind int

const (
	SnapshotRecord Kind = iota
	TombstoneRecord
	ChangeRecord
	InvalidRecord
)

// Result is what handling one record did, with the line that reports it.
type Result struct {
	Kind    Kind
	Outcome Outcome
	Line    any
}

// Subscriber validates records against the topics' schemas and applies them to its state.
type Subscriber struct {
	Tiers   *Tiers
	schemas map[string]*TopicSchema
	prefix  string
}

// NewSubscriber starts with no members.
func NewSubscriber(schemas map[string]*TopicSchema, prefix string) *Subscriber {
	return &Subscriber{Tiers: NewTiers(), schemas: schemas, prefix: prefix}
}

// Handle validates one record and applies it; an invalid record changes nothing.
func (s *Subscriber) Handle(r Record) Result {
	where := Where{Topic: s.prefix + r.Topic, Partition: r.Partition, Offset: r.Offset}
	result, err := s.handle(r, where)
	if err != nil {
		return Result{Kind: InvalidRecord, Line: InvalidLine{
			Event: "invalid", Key: keyText(r.Key), Reason: err.Error(), Where: where,
		}}
	}
	return result
}

func (s *Subscriber) handle(r Record, where Where) (Result, error) {
	schema, ok := s.schemas[r.Topic]
	if !ok {
		return Result{}, fmt.Errorf("no schema loaded for topic %s", r.Topic)
	}
	if r.Value == nil {
		if r.Topic != TiersTopic {
			return Result{}, errors.New("a null value (tombstone) on a topic that has none")
		}
		if len(r.Key) == 0 {
			return Result{}, errors.New("a tombstone without a key")
		}
		customerID := string(r.Key)
		previous := s.previousTier(customerID)
		s.Tiers.Erase(customerID)
		return Result{Kind: TombstoneRecord, Outcome: Applied, Line: ErasedLine{
			Event: "erased", CustomerID: customerID, PreviousTier: previous, Where: where,
		}}, nil
	}
	if len(r.Value) == 0 {
		return Result{}, errors.New("an empty value: not JSON, and not a tombstone (a null value)")
	}
	if err := schema.Validate(r.Value); err != nil {
		return Result{}, err
	}
	if r.Topic == TiersTopic {
		return s.snapshot(r, where)
	}
	return s.change(r, where)
}

func (s *Subscriber) snapshot(r Record, where Where) (Result, error) {
	var event tierSnapshot
	if err := json.Unmarshal(r.Value, &event); err != nil {
		return Result{}, fmt.Errorf("not a TierSnapshot: %w", err)
	}
	if err := keyIsCustomer(r.Key, event.CustomerID); err != nil {
		return Result{}, err
	}
	since, err := parseTime("since", event.Since)
	if err != nil {
		return Result{}, err
	}
	previous := s.previousTier(event.CustomerID)
	update := Member{Tier: event.Tier, Since: since, SinceText: event.Since}
	outcome := s.Tiers.Set(event.CustomerID, update)
	return Result{Kind: SnapshotRecord, Outcome: outcome, Line: SnapshotLine{
		Event: "snapshot", Outcome: outcome.String(), CustomerID: event.CustomerID, Tier: event.Tier,
		Since: event.Since, PreviousTier: previous, EventID: event.EventID, Where: where,
	}}, nil
}

func (s *Subscriber) change(r Record, where Where) (Result, error) {
	var event tierChanged
	if err := json.Unmarshal(r.Value, &event); err != nil {
		return Result{}, fmt.Errorf("not a TierChanged: %w", err)
	}
	if err := keyIsCustomer(r.Key, event.CustomerID); err != nil {
		return Result{}, err
	}
	at, err := parseTime("occurred_at", event.OccurredAt)
	if err != nil {
		return Result{}, err
	}
	previous := s.previousTier(event.CustomerID)
	update := Member{Tier: event.NewTier, Since: at, SinceText: event.OccurredAt}
	outcome := s.Tiers.Set(event.CustomerID, update)
	return Result{Kind: ChangeRecord, Outcome: outcome, Line: ChangeLine{
		Event: "tier_changed", Outcome: outcome.String(), CustomerID: event.CustomerID,
		OldTier: event.OldTier, NewTier: event.NewTier, Direction: event.Direction,
		Reason: event.Reason, OccurredAt: event.OccurredAt, PreviousTier: previous,
		EventID: event.EventID, Where: where,
	}}, nil
}

func (s *Subscriber) previousTier(customerID string) *string {
	if member, ok := s.Tiers.Get(customerID); ok {
		return &member.Tier
	}
	return nil
}

// Both topics are keyed by customer id; a record filed under another key is not trusted.
func keyIsCustomer(key []byte, customerID string) error {
	if string(key) != customerID {
		return errors.New("the key is not the event's customer_id")
	}
	return nil
}

// contractTime is the timestamp pattern of the committed schemas: ISO 8601 with an offset,
// the T or a space, seconds and fraction optional, the offset's colon optional.
var contractTime = regexp.MustCompile(
	`^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2})(:[0-9]{2})?(?:[.,]([0-9]+))?` +
		`(?:([Zz])|([+-][0-9]{2}):?([0-9]{2}))$`)

// parseTime reads a timestamp the schema accepted, in the form RFC 3339 spells it.
func parseTime(field, text string) (time.Time, error) {
	parts := contractTime.FindStringSubmatch(text)
	if parts == nil {
		return time.Time{}, fmt.Errorf("%s: not a timestamp with an offset", field)
	}
	date, clock, seconds, fraction, zulu := parts[1], parts[2], parts[3], parts[4], parts[5]
	if seconds == "" {
		seconds = ":00"
	}
	if fraction != "" {
		fraction = "." + fraction
	}
	offset := "Z"
	if zulu == "" {
		offset = parts[6] + ":" + parts[7]
	}
	at, err := time.Parse(time.RFC3339Nano, date+"T"+clock+seconds+fraction+offset)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: not a valid time", field)
	}
	return at, nil
}

func keyText(key []byte) *string {
	if key == nil {
		return nil
	}
	text := string(key)
	return &text
}

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Unchanged:
		return "unchanged"
	case Stale:
		return "stale"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}
