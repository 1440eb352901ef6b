-- speed-run's run store gets its own database beside the LangGraph server's: both create a `checkpoints` table.
CREATE DATABASE speedrun;
