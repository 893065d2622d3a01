"""The job runner: claims jobs, runs their playbooks, follows their hosts, ends them."""
