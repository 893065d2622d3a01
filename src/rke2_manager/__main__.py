from rke2_manager.cli import app

app()
