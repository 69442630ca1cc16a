"""What a team's Crucibles share through infrastructure the team already runs: the link to
its Redis (``redis_link.py``), and through it the L3 cache and the team budget."""
