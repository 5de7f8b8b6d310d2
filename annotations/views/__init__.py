"""Pages of the study store, the worklist and the CT viewer."""
