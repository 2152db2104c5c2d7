#ifndef ML_CORE_TIMER_H
#define ML_CORE_TIMER_H

/* Monotonic time in milliseconds. */
double ml_now_ms(void);

#endif
