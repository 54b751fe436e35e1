"""Keras networks beyond the ENAS child: the QAN / QAN++ quality networks."""
