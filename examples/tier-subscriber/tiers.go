package main

import (
	"maps"
	"slices"
	"time"
)

// Member is what the subscriber knows of one member: the tier and since when it holds.
type Member struct {
	Tier  string
	Since time.Time
	// SinceText is Since as the event wrote it (with its own offset), for the output.
	SinceText string
}

// Outcome says what an update did to the state.
type Outcome int

const (
	// Applied: the member's tier or since changed (or the member is new).
	Applied Outcome = iota
	// Unchanged: the update says what the state already holds.
	Unchanged
	// Stale: the member's current tier holds since a later moment than the update.
	Stale
)

// Tiers is the current tier of every known member, keyed by customer id.
//
// The two topics are read side by side and Kafka orders records only within a partition
// of one topic, so a snapshot may arrive after a later tier change of the same member.
// An update older than the tier the member already holds is therefore stale and ignored;
// both topics carry the moment of the change (TierSnapshot.since, TierChanged.occurred_at).
type Tiers struct {
	members map[string]Member
}

// NewTiers returns an empty state.
func NewTiers() *Tiers {
	return &Tiers{members: map[string]Member{}}
}

// Get returns a member's current tier, and whether the member is known.
func (t *Tiers) Get(customerID string) (Member, bool) {
	member, ok := t.members[customerID]
	return member, ok
}

// Len is the number of known members.
func (t *Tiers) Len() int {
	return len(t.members)
}

// CustomerIDs lists the known members in order.
func (t *Tiers) CustomerIDs() []string {
	return slices.Sorted(maps.Keys(t.members))
}

// ByTier counts the members of each tier.
func (t *Tiers) ByTier() map[string]int {
	counts := map[string]int{}
	for _, member := range t.members {
		counts[member.Tier]++
	}
	return counts
}

// Set makes tier the member's tier since the given moment, unless it already holds a
// tier since a later moment.
func (t *Tiers) Set(customerID string, update Member) Outcome {
	current, known := t.members[customerID]
	switch {
	case known && current.Since.After(update.Since):
		return Stale
	case known && current.Tier == update.Tier && current.Since.Equal(update.Since):
		return Unchanged
	}
	t.members[customerID] = update
	return Applied
}

// Erase forgets a member (its tiers.v1 record became a tombstone); false when unknown.
func (t *Tiers) Erase(customerID string) bool {
	_, known := t.members[customerID]
	delete(t.members, customerID)
	return known
}
