package main

import (
	"testing"
	"time"
)

func member(tier string, day int) Member {
	at := time.Date(2026, 11, day, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))
	return Member{Tier: tier, Since: at, SinceText: at.Format(time.RFC3339)}
}

func TestSetKeepsTheLatestTier(t *testing.T) {
	tiers := NewTiers()
	if got := tiers.Set("C1", member("silver", 1)); got != Applied {
		t.Fatalf("a new member: %v, want applied", got)
	}
	if got := tiers.Set("C1", member("gold", 5)); got != Applied {
		t.Fatalf("a later tier: %v, want applied", got)
	}
	if got := tiers.Set("C1", member("silver", 3)); got != Stale {
		t.Fatalf("an older tier: %v, want stale", got)
	}
	if got := tiers.Set("C1", member("gold", 5)); got != Unchanged {
		t.Fatalf("the same tier again: %v, want unchanged", got)
	}
	if current, _ := tiers.Get("C1"); current.Tier != "gold" {
		t.Fatalf("tier %s, want gold", current.Tier)
	}
}

func TestSameMomentInAnotherZoneIsNotStale(t *testing.T) {
	tiers := NewTiers()
	tiers.Set("C1", member("silver", 1))
	utc := member("silver", 1)
	utc.Since = utc.Since.UTC()
	if got := tiers.Set("C1", utc); got != Unchanged {
		t.Fatalf("the same instant written in UTC: %v, want unchanged", got)
	}
}

func TestEraseForgetsTheMember(t *testing.T) {
	tiers := NewTiers()
	tiers.Set("C1", member("silver", 1))
	tiers.Set("C2", member("gold", 1))
	if !tiers.Erase("C1") {
		t.Fatal("erasing a known member said unknown")
	}
	if tiers.Erase("C1") {
		t.Fatal("erasing twice said known")
	}
	if _, ok := tiers.Get("C1"); ok || tiers.Len() != 1 {
		t.Fatalf("C1 still known or %d members, want 1", tiers.Len())
	}
	if got := tiers.ByTier(); len(got) != 1 || got["gold"] != 1 {
		t.Fatalf("by tier %v, want gold: 1", got)
	}
}
