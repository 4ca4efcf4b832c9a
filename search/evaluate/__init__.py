"""What a finished study is worth: retraining, confirmation, the verdict, export, report."""
