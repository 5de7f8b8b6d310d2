"""Lead pages: training runs and evaluation dashboards."""
