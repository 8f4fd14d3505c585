"""Care: decides who is contacted, when, how and by whom, and emits outreach when due."""
