"""`garfield report`: the cost-of-resilience report (bench/results/resilience.md and its PNG plots).

One module per part: `accuracy` (rule x attack x momentum mode), `crash` (finding (a)),
`overhead` (finding (b)), `servers` (finding (c)), `scaling`, `alie` (what holds under A Little
Is Enough); `grid` sizes them, `jobs` runs them (simulations in parallel processes, then real
runs one at a time), `plots` draws, `main` writes the markdown and is the command's entry point.
"""
