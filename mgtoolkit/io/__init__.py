"""Reading and writing audio and images."""
