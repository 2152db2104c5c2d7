/* The subcommands of the meshllama program; each returns the process exit status. */
#ifndef ML_APPS_COMMANDS_H
#define ML_APPS_COMMANDS_H

int ml_cmd_run(int argc, char **argv);
int ml_cmd_inspect(int argc, char **argv);
int ml_cmd_eval(int argc, char **argv);
int ml_cmd_tokenize(int argc, char **argv);
int ml_cmd_chat(int argc, char **argv);
int ml_cmd_bench(int argc, char **argv);
/* server/serve.c; without libmicrohttpd at build time, a stub that says so */
int ml_cmd_serve(int argc, char **argv);

#endif
