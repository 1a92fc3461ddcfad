"""The tasks side by side: text, image and audio to music. Each turns a request into clips."""
