"""`python -m sandbox.search_sim`: simulated clusters in a process of their own."""

from sandbox.search_sim.fleet import main

main()
