# Used by make (IPYTHONDIR): silence the "running over TCP" warning ipykernel 7 prints.
c.IPKernelApp.log_level = "ERROR"
