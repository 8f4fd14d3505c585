package main

import (
	"strings"
	"testing"
	"time"
)

const snapshotC1 = `{"event_id": "tier:C1:1", "occurred_at": "2026-11-01T10:00:00+08:00",
	"customer_id": "C1", "tier": "silver", "since": "2026-11-01T10:00:00+08:00"}`

const changeC1 = `{"event_id": "tier-changed:C1:2", "occurred_at": "2026-12-01T10:00:00+08:00",
	"customer_id": "C1", "old_tier": "silver", "new_tier": "gold", "direction": "up",
	"reason": "spend", "points_balance": 1200, "qualifying_spend": "12000.00",
	"qualifying_orders": 7}`

func handle(t *testing.T, s *Subscriber, topic, key, value string, null bool) Result {
	t.Helper()
	record := Record{Topic: topic, Key: []byte(key), Value: []byte(value)}
	if null {
		record.Value = nil
	}
	return s.Handle(record)
}

func invalidReason(t *testing.T, result Result) string {
	t.Helper()
	if result.Kind != InvalidRecord {
		t.Fatalf("applied %+v, want invalid", result.Line)
	}
	return result.Line.(InvalidLine).Reason
}

func TestChangesApplyOverTheSnapshot(t *testing.T) {
	s := NewSubscriber(committedSchemas(t), "p.")
	if result := handle(t, s, TiersTopic, "C1", snapshotC1, false); result.Kind != SnapshotRecord {
		t.Fatalf("snapshot: %+v", result.Line)
	}
	result := handle(t, s, TierChangedTopic, "C1", changeC1, false)
	line, ok := result.Line.(ChangeLine)
	if !ok || result.Outcome != Applied {
		t.Fatalf("change: %+v", result.Line)
	}
	if *line.PreviousTier != "silver" || line.NewTier != "gold" ||
		line.Topic != "p.loyalty.tier-changed.v1" {
		t.Fatalf("change line %+v", line)
	}
	// The snapshot loyalty writes beside an older change arrives late: it changes nothing.
	if result := handle(t, s, TiersTopic, "C1", snapshotC1, false); result.Outcome != Stale {
		t.Fatalf("a late snapshot: %v, want stale", result.Outcome)
	}
	if member, _ := s.Tiers.Get("C1"); member.Tier != "gold" {
		t.Fatalf("tier %s, want gold", member.Tier)
	}
	if result := handle(t, s, TiersTopic, "C1", "", true); result.Kind != TombstoneRecord {
		t.Fatalf("tombstone: %+v", result.Line)
	}
	if s.Tiers.Len() != 0 {
		t.Fatal("the tombstone left the member")
	}
}

func TestInvalidRecordsChangeNothing(t *testing.T) {
	s := NewSubscriber(committedSchemas(t), "")
	handle(t, s, TiersTopic, "C1", snapshotC1, false)
	badDirection := strings.Replace(changeC1, `"up"`, `"aside"`, 1)
	moneyAsNumber := strings.Replace(changeC1, `"12000.00"`, `12000.5`, 1)
	noOffset := strings.Replace(snapshotC1, `T10:00:00+08:00"}`, `T10:00:00"}`, 1)
	noTier := strings.Replace(snapshotC1, `"tier": "silver", `, ``, 1)
	cases := []struct {
		name, topic, key, value string
		null                    bool
		want                    string
	}{
		{"tombstone on tier-changed", TierChangedTopic, "C1", "", true, "tombstone"},
		{"tombstone without key", TiersTopic, "", "", true, "without a key"},
		{"empty value", TiersTopic, "C1", "", false, "empty value"},
		{"not JSON", TierChangedTopic, "C1", "{", false, "not JSON"},
		{"key of another member", TierChangedTopic, "C2", changeC1, false, "key"},
		{"bad direction", TierChangedTopic, "C1", badDirection, false, "/direction"},
		{"money as a number", TierChangedTopic, "C1", moneyAsNumber, false, "/qualifying_spend"},
		{"no offset", TiersTopic, "C1", noOffset, false, "/since"},
		{"no tier", TiersTopic, "C1", noTier, false, "tier"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reason := invalidReason(t, handle(t, s, c.topic, c.key, c.value, c.null))
			if !strings.Contains(reason, c.want) {
				t.Fatalf("reason %q, want it to name %q", reason, c.want)
			}
			if strings.Contains(reason, "aside") || strings.Contains(reason, "12000") {
				t.Fatalf("reason %q quotes a value", reason)
			}
		})
	}
	if member, _ := s.Tiers.Get("C1"); s.Tiers.Len() != 1 || member.Tier != "silver" {
		t.Fatalf("state changed: %d members, C1 %s", s.Tiers.Len(), member.Tier)
	}
}

func TestTimesInEveryFormTheSchemaAccepts(t *testing.T) {
	want := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	for _, text := range []string{
		"2026-12-01T10:00:00+08:00",
		"2026-12-01 10:00+08:00",
		"2026-12-01t10:00:00.000+0800",
		"2026-12-01T10:00:00,0+08:00",
		"2026-12-01T02:00:00Z",
		"2026-12-01T02:00z",
	} {
		at, err := parseTime("at", text)
		if err != nil || !at.Equal(want) {
			t.Errorf("%s: %v, %v; want %v", text, at, err, want)
		}
	}
	for _, text := range []string{"2026-12-01T10:00:00", "2026-13-01T10:00:00+08:00", "yesterday"} {
		if _, err := parseTime("at", text); err == nil {
			t.Errorf("%s accepted", text)
		}
	}
}
