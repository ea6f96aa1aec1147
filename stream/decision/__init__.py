"""The fear/disgust decision layer: what a scored stretch of speech means, and what a human should check."""
