"""The only room that runs anything on a board: the executor (a plan over board sessions) and the sessions
(targets/), the resident agent's protocol, interruption. Imports core, config, analysis and emulation."""
