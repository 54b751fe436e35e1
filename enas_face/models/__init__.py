"""The networks' room: Keras models built from a search space's samples (builders.py is the
one door from spaces to models), their ops and heads, and the set-quality networks."""
