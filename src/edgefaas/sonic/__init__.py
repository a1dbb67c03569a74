"""The SONiC switch's side of the blueprint: its configuration database, written owner by owner."""
