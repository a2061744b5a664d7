//! How mysqld's RSS grew, from the timeline: for the opening of `jemsafe leaks`.
