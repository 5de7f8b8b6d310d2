"""One Job model for all long work, and the runner that moves it through its states."""
